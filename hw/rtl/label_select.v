// Label select: index of the largest of NF*PE signed values per frame.
//
// Consumes NF beats of PE signed ACC_BITS values (the accumulator stream of
// the last layer) and emits one beat per frame with the index of the maximum;
// on a tie the lowest index wins, as numpy.argmax / torch.argmax do.
//
// Pipeline (no stall anywhere inside; every stage carries a valid bit):
//   S0      : the accepted beat is registered (values, first/last of frame,
//             index of its value 0)
//   S1..SL  : a comparator tree over the PE values, one registered level per
//             comparison, whose left (lower index) operand wins ties
//   run     : the beat winner replaces the running best only if strictly
//             greater (earlier beats hold lower indices); on the last beat of
//             a frame the best index enters the result queue
// so no clock cycle holds more than one comparison and one 2:1 selection.
//
// Flow control by credit: a frame's last beat is accepted only while fewer
// than QD results are in flight or queued, and the QD-deep result queue then
// always has room when they arrive. in_ready therefore comes from registers
// only (no combinational path from out_ready), and with QD above the pipeline
// latency the input is never throttled while the output is ready.
`resetall
`timescale 1ns / 1ps
`default_nettype none

module label_select #(
    parameter PE = 2,
    parameter NF = 5,
    parameter ACC_BITS = 8,
    parameter INDEX_BITS = 8
) (
    input  wire                   clk,
    input  wire                   rst_n,

    input  wire [PE*ACC_BITS-1:0] in_data,
    input  wire                   in_valid,
    output wire                   in_ready,

    output wire [INDEX_BITS-1:0]  out_data,
    output wire                   out_valid,
    input  wire                   out_ready
);

localparam LEVELS = $clog2(PE);
localparam NP = 1 << LEVELS;
localparam NFW = (NF > 1) ? $clog2(NF) : 1;
localparam [31:0] NF_LAST = NF - 1;
localparam [31:0] PE_32 = PE;
// A result leaves the run stage LEVELS + 2 edges after its last beat was
// accepted and the queue offers it one edge later: QD credits cover that
// round trip, so a stream of one-beat frames flows at one frame per cycle.
localparam QD = LEVELS + 4;

generate
    if ((NF * PE) > (1 << INDEX_BITS)) begin : g_err_idx
        label_select_error_INDEX_BITS_too_small_for_NF_times_PE u_err();
    end
endgenerate

// ---------------------------------------------------------------- input
reg [NFW-1:0] nf;
reg [INDEX_BITS-1:0] base;       // nf*PE, index of this beat's value 0
wire credit;                     // fewer than QD results accepted and not yet taken

wire nf_last = (nf == NF_LAST[NFW-1:0]);
assign in_ready = !nf_last || credit;
wire in_fire = in_valid && in_ready;
wire take_frame = in_fire && nf_last;

always @(posedge clk) begin
    if (!rst_n) begin
        nf <= {NFW{1'b0}};
        base <= {INDEX_BITS{1'b0}};
    end else begin
        if (in_fire) begin
            if (nf_last) begin
                nf <= {NFW{1'b0}};
                base <= {INDEX_BITS{1'b0}};
            end else begin
                nf <= nf + 1'b1;
                base <= base + PE_32[INDEX_BITS-1:0];
            end
        end
    end
end

// ---------------------------------------------------------------- tree
// Tree over NP (power of two) leaves; padding leaves are marked invalid so
// they never win. Node = {valid, index, value}. Level l is the register
// stage S(l); the control bits travel beside it in ctl[l].
localparam IW = (LEVELS > 0) ? LEVELS : 1;
localparam NW = 1 + IW + ACC_BITS;
localparam CTW = 3 + INDEX_BITS;   // {valid, first, last, base}

genvar l, i;
generate
    for (l = 0; l <= LEVELS; l = l + 1) begin : g_lvl
        reg [(NP>>l)*NW-1:0] v;
        reg [CTW-1:0] ctl;
        if (l == 0) begin : g_leaf
            wire [NP*NW-1:0] leaves;
            for (i = 0; i < NP; i = i + 1) begin : g_node
                localparam [31:0] I_32 = i;
                if (i < PE) begin : g_real
                    assign leaves[i*NW +: NW] = {1'b1, I_32[IW-1:0], in_data[i*ACC_BITS +: ACC_BITS]};
                end else begin : g_pad
                    assign leaves[i*NW +: NW] = {NW{1'b0}};
                end
            end
            always @(posedge clk) begin
                if (!rst_n) begin
                    ctl[CTW-1] <= 1'b0;
                end else begin
                    ctl[CTW-1] <= in_fire;
                end
            end
            always @(posedge clk) begin
                if (in_fire) begin
                    v <= leaves;
                    ctl[CTW-2:0] <= {nf == {NFW{1'b0}}, nf_last, base};
                end
            end
        end else begin : g_cmp
            wire [(NP>>l)*NW-1:0] nx;
            for (i = 0; i < (NP>>l); i = i + 1) begin : g_node
                wire [NW-1:0] a = g_lvl[l-1].v[(2*i)*NW +: NW];
                wire [NW-1:0] b = g_lvl[l-1].v[(2*i+1)*NW +: NW];
                // a holds the lower indices: it wins ties and whenever b is padding
                wire b_wins = b[NW-1] && (!a[NW-1] ||
                    ($signed(b[ACC_BITS-1:0]) > $signed(a[ACC_BITS-1:0])));
                assign nx[i*NW +: NW] = b_wins ? b : a;
            end
            always @(posedge clk) begin
                if (!rst_n) begin
                    ctl[CTW-1] <= 1'b0;
                end else begin
                    ctl[CTW-1] <= g_lvl[l-1].ctl[CTW-1];
                end
            end
            always @(posedge clk) begin
                if (g_lvl[l-1].ctl[CTW-1]) begin
                    v <= nx;
                    ctl[CTW-2:0] <= g_lvl[l-1].ctl[CTW-2:0];
                end
            end
        end
    end
endgenerate

wire [NW-1:0] beat_best = g_lvl[LEVELS].v;
wire [CTW-1:0] beat_ctl = g_lvl[LEVELS].ctl;
wire [ACC_BITS-1:0] beat_val = beat_best[ACC_BITS-1:0];
wire [IW-1:0] beat_idx = beat_best[ACC_BITS +: IW];
wire unused_beat_valid = beat_best[NW-1];
wire beat_v = beat_ctl[CTW-1];
wire beat_first = beat_ctl[CTW-2];
wire beat_last = beat_ctl[CTW-3];
wire [INDEX_BITS-1:0] beat_base = beat_ctl[INDEX_BITS-1:0];

// ---------------------------------------------------------------- run
reg [ACC_BITS-1:0] best_val;
reg [INDEX_BITS-1:0] best_idx;
reg res_valid;
reg [INDEX_BITS-1:0] res_idx;

wire [INDEX_BITS-1:0] beat_gidx;
generate
    if (INDEX_BITS > IW) begin : g_idx_ext
        assign beat_gidx = beat_base + {{(INDEX_BITS-IW){1'b0}}, beat_idx};
    end else begin : g_idx_same
        // INDEX_BITS >= clog2(PE) is implied by the range check above
        assign beat_gidx = beat_base + beat_idx;
    end
endgenerate
wire take_beat = beat_first || ($signed(beat_val) > $signed(best_val));
wire [INDEX_BITS-1:0] new_idx = take_beat ? beat_gidx : best_idx;

always @(posedge clk) begin
    if (!rst_n) begin
        res_valid <= 1'b0;
    end else begin
        res_valid <= beat_v && beat_last;
    end
end

always @(posedge clk) begin
    if (beat_v) begin
        if (take_beat) begin
            best_val <= beat_val;
        end
        best_idx <= new_idx;
        res_idx <= new_idx;
    end
end

// ---------------------------------------------------------------- queue
credit_queue #(
    .WIDTH(INDEX_BITS),
    .DEPTH(QD)
) u_queue (
    .clk(clk),
    .rst_n(rst_n),
    .take(take_frame),
    .credit(credit),
    .in_data(res_idx),
    .in_valid(res_valid),
    .out_data(out_data),
    .out_valid(out_valid),
    .out_ready(out_ready)
);

endmodule

`resetall
