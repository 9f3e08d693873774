// Label select: index of the largest of NF*PE signed values per frame.
//
// Consumes NF beats of PE signed ACC_BITS values (the accumulator stream of
// the last layer) and emits one beat per frame with the index of the maximum;
// on a tie the lowest index wins, as numpy.argmax / torch.argmax do.
//
// Per beat the PE values are reduced by a comparator tree whose left (lower
// index) operand wins ties; the beat winner then replaces the running best
// only if strictly greater, since earlier beats hold lower indices.
//
// The input is accepted every cycle: only the last beat of a frame has to
// wait, and only while a previous result still sits unaccepted in the output
// register (in_ready then follows out_ready combinationally).
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

generate
    if ((NF * PE) > (1 << INDEX_BITS)) begin : g_err_idx
        label_select_error_INDEX_BITS_too_small_for_NF_times_PE u_err();
    end
endgenerate

// ---------------------------------------------------------------- beat max
// Tree over NP (power of two) leaves; padding leaves are marked invalid so
// they never win. Node = {valid, index, value}.
localparam IW = (LEVELS > 0) ? LEVELS : 1;
localparam NW = 1 + IW + ACC_BITS;

genvar l, i;
generate
    for (l = 0; l <= LEVELS; l = l + 1) begin : g_lvl
        wire [(NP>>l)*NW-1:0] v;
        if (l == 0) begin : g_leaf
            for (i = 0; i < NP; i = i + 1) begin : g_node
                localparam [31:0] I_32 = i;
                if (i < PE) begin : g_real
                    assign v[i*NW +: NW] = {1'b1, I_32[IW-1:0], in_data[i*ACC_BITS +: ACC_BITS]};
                end else begin : g_pad
                    assign v[i*NW +: NW] = {NW{1'b0}};
                end
            end
        end else begin : g_cmp
            for (i = 0; i < (NP>>l); i = i + 1) begin : g_node
                wire [NW-1:0] a = g_lvl[l-1].v[(2*i)*NW +: NW];
                wire [NW-1:0] b = g_lvl[l-1].v[(2*i+1)*NW +: NW];
                // a holds the lower indices: it wins ties and whenever b is padding
                wire b_wins = b[NW-1] && (!a[NW-1] ||
                    ($signed(b[ACC_BITS-1:0]) > $signed(a[ACC_BITS-1:0])));
                assign v[i*NW +: NW] = b_wins ? b : a;
            end
        end
    end
endgenerate

wire [NW-1:0] beat_best = g_lvl[LEVELS].v;
wire [ACC_BITS-1:0] beat_val = beat_best[ACC_BITS-1:0];
wire [IW-1:0] beat_idx = beat_best[ACC_BITS +: IW];
wire unused_beat_valid = beat_best[NW-1];

// ---------------------------------------------------------------- frame max
reg out_valid_reg;
reg [INDEX_BITS-1:0] out_data_reg;
reg [NFW-1:0] nf;
reg [INDEX_BITS-1:0] base;       // nf*PE, index of this beat's value 0
reg [ACC_BITS-1:0] best_val;
reg [INDEX_BITS-1:0] best_idx;

wire nf_first = (nf == {NFW{1'b0}});
wire nf_last = (nf == NF_LAST[NFW-1:0]);
assign in_ready = !nf_last || !out_valid_reg || out_ready;
wire in_fire = in_valid && in_ready;

wire [INDEX_BITS-1:0] beat_gidx;
generate
    if (INDEX_BITS > IW) begin : g_idx_ext
        assign beat_gidx = base + {{(INDEX_BITS-IW){1'b0}}, beat_idx};
    end else begin : g_idx_same
        // INDEX_BITS >= clog2(PE) is implied by the range check above
        assign beat_gidx = base + beat_idx;
    end
endgenerate
wire take_beat = nf_first || ($signed(beat_val) > $signed(best_val));
wire [INDEX_BITS-1:0] new_idx = take_beat ? beat_gidx : best_idx;

always @(posedge clk) begin
    if (!rst_n) begin
        nf <= {NFW{1'b0}};
        base <= {INDEX_BITS{1'b0}};
        out_valid_reg <= 1'b0;
    end else begin
        if (out_ready) begin
            out_valid_reg <= 1'b0;
        end
        if (in_fire) begin
            if (nf_last) begin
                nf <= {NFW{1'b0}};
                base <= {INDEX_BITS{1'b0}};
                out_valid_reg <= 1'b1;
            end else begin
                nf <= nf + 1'b1;
                base <= base + PE_32[INDEX_BITS-1:0];
            end
        end
    end
end

always @(posedge clk) begin
    if (in_fire) begin
        if (take_beat) begin
            best_val <= beat_val;
        end
        best_idx <= new_idx;
        if (nf_last) begin
            out_data_reg <= new_idx;
        end
    end
end

assign out_data = out_data_reg;
assign out_valid = out_valid_reg;

endmodule

`resetall
