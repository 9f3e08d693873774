// Multi-threshold requantization of an integer stream, as a pipelined binary
// search.
//
// Input: beats of LANES integers of IN_BITS bits (lane j at bits
// [j*IN_BITS +: IN_BITS]), two's complement if SIGNED, else unsigned; C
// channels folded over the lanes, so a pixel is CF = C/LANES beats and lane j
// of beat f carries channel f*LANES + j (channels last, as everywhere). Each
// channel c has NT = 2^OUT_BITS - 1 thresholds T[c][0] <= ... <= T[c][NT-1]
// (T_BITS-bit two's complement). Output lane j (OUT_BITS bits, unsigned) is
// the number of thresholds met, y = #{t : x >= T[c][t]}: a value equal to a
// threshold counts it. OUT_BITS = 1 is the plain comparison x >= T[c][0].
//
// Stage s (s = 0 .. OUT_BITS-1) decides output bit OUT_BITS-1-s: with the
// bits above it already known as r, it compares x with
// T[c][r + 2^(OUT_BITS-1-s) - 1] and sets the bit when x meets it. Because the
// thresholds are sorted, OUT_BITS comparisons per value find y exactly, where
// a parallel search needs NT comparators. Stage s only ever reads the 2^s
// thresholds of its own level, so each lane has one small memory per stage,
// CF*2^s words deep at address {f, r}; the read is synchronous (block or
// distributed RAM) and its address is formed in the stage before from that
// stage's comparison.
//
// Memory images: one $readmemh file per stage s and lane j, named
// <THRESH_PREFIX>_s<s>_l<j>.mem, j in decimal with as many digits as LANES-1
// has (LANES = 16: _l00 .. _l15); word f*2^s + r = T[f*LANES + j][r*2^(OUT_BITS-s)
// + 2^(OUT_BITS-1-s) - 1]. hw/memfiles_thresholding.py writes them.
//
// OUT_FLIP inverts the output of the channels whose requantizer falls as the
// input grows (a negative BatchNorm scale after a residual add): those
// channels' thresholds are stored for NT - y, which rises, and the output
// register holds the K-bit complement, NT - (NT - y) = y of the graph.
//
// Timing: one beat per cycle. The pipeline advances whenever the output
// register is free or read (in_ready = that condition, a combinational path
// from out_ready as in mvtu); a beat taken in cycle t is on the output in
// cycle t + OUT_BITS + 1 (OUT_BITS search stages, the first of which is the
// input register, then the output register).
`resetall
`timescale 1ns / 1ps
`default_nettype none

module thresholding #(
    parameter LANES = 2,
    parameter C = 4,               // channels, a multiple of LANES
    parameter IN_BITS = 8,
    parameter SIGNED = 1,          // input two's complement (1) or unsigned (0)
    parameter OUT_BITS = 2,        // k: 2^k - 1 thresholds per channel, k = 1 .. 8
    parameter T_BITS = 9,          // threshold width, two's complement
    parameter THRESH_PREFIX = "thresholds",
    parameter [C-1:0] OUT_FLIP = 0 // bit c set: channel c outputs NT - y (a falling requantizer)
) (
    input  wire                      clk,
    input  wire                      rst_n,

    input  wire [LANES*IN_BITS-1:0]  in_data,
    input  wire                      in_valid,
    output wire                      in_ready,

    output wire [LANES*OUT_BITS-1:0] out_data,
    output wire                      out_valid,
    input  wire                      out_ready
);

localparam K = (OUT_BITS > 0) ? OUT_BITS : 1;   // 0 is refused below
localparam CF = (LANES > 0) ? C / LANES : 1;
localparam CFW = (CF > 1) ? $clog2(CF) : 1;
// one bit wider than either operand, so both extend by at least one bit
localparam CMPW = ((IN_BITS > T_BITS) ? IN_BITS : T_BITS) + 1;
// decimal digits of the lane number in the image file names
localparam LD = (LANES > 1000) ? 4 : (LANES > 100) ? 3 : (LANES > 10) ? 2 : 1;
localparam [31:0] CF_LAST = CF - 1;

generate
    if (LANES < 1 || C < 1 || C % LANES != 0) begin : g_err_lanes
        thresholding_error_C_not_a_positive_multiple_of_LANES u_err();
    end
    if (OUT_BITS < 1 || OUT_BITS > 8) begin : g_err_k
        thresholding_error_OUT_BITS_must_be_1_to_8 u_err();
    end
    if (IN_BITS < 1 || T_BITS < 1 || (SIGNED != 0 && SIGNED != 1)) begin : g_err_bits
        thresholding_error_IN_BITS_T_BITS_positive_SIGNED_0_or_1 u_err();
    end
    if (LANES > 10000) begin : g_err_names
        thresholding_error_at_most_10000_LANES u_err();
    end
endgenerate

wire en;
reg out_valid_reg;
reg [LANES*K-1:0] out_data_reg;

assign en = !out_valid_reg || out_ready;
assign in_ready = en;
wire in_fire = in_valid && en;

// ---------------------------------------------------------------- control
// valid bit and channel fold of every stage; the fold of stage s addresses
// the memories of stage s+1
reg [K-1:0] v;
reg [CFW-1:0] cf_in;              // fold of the next input beat
reg [K*CFW-1:0] cf;               // cf[s*CFW +: CFW]: fold of stage s
wire [K-1:0] v_next;
wire [K*CFW-1:0] cf_next;
// the last stage's fold addresses nothing; with CF = 1 there is no fold
wire unused_cf = &{1'b0, cf};

generate
    if (K > 1) begin : g_shift
        assign v_next = {v[K-2:0], in_fire};
        assign cf_next = {cf[(K-1)*CFW-1:0], cf_in};
    end else begin : g_single
        assign v_next = in_fire;
        assign cf_next = cf_in;
    end
endgenerate

always @(posedge clk) begin
    if (!rst_n) begin
        v <= {K{1'b0}};
        cf_in <= {CFW{1'b0}};
        out_valid_reg <= 1'b0;
    end else begin
        if (en) begin
            v <= v_next;
            out_valid_reg <= v[K-1];
        end
        if (in_fire) begin
            cf_in <= (cf_in == CF_LAST[CFW-1:0]) ? {CFW{1'b0}} : cf_in + 1'b1;
        end
    end
end

always @(posedge clk) begin
    if (en) begin
        cf <= cf_next;
    end
end

// ---------------------------------------------------------------- search
wire [LANES*K-1:0] result;

genvar j, s;
generate
    for (j = 0; j < LANES; j = j + 1) begin : g_lane
        localparam [31:0] D0 = 48 + j % 10;
        localparam [31:0] D1 = 48 + (j / 10) % 10;
        localparam [31:0] D2 = 48 + (j / 100) % 10;
        localparam [31:0] D3 = 48 + (j / 1000) % 10;
        localparam [31:0] DIGITS = {D3[7:0], D2[7:0], D1[7:0], D0[7:0]};
        localparam [8*LD-1:0] LANE_STR = DIGITS[8*LD-1:0];

        for (s = 0; s < K; s = s + 1) begin : g_stage
            localparam DEPTH = CF << s;
            localparam [31:0] S_CHAR = 48 + s;
            reg [T_BITS-1:0] tmem [0:DEPTH-1];
            initial $readmemh({THRESH_PREFIX, "_s", S_CHAR[7:0], "_l", LANE_STR, ".mem"}, tmem);

            reg [IN_BITS-1:0] x;          // the value being requantized
            reg [T_BITS-1:0] thr;         // the threshold it meets or not
            wire [K-1:0] r;               // output bits decided before this stage
            wire [K-1:0] r_next;          // ... and after it

            if (s == 0) begin : g_first
                assign r = {K{1'b0}};
                always @(posedge clk) begin
                    if (en) begin
                        x <= in_data[j*IN_BITS +: IN_BITS];
                    end
                end
                if (CF > 1) begin : g_addr
                    always @(posedge clk) begin
                        if (en) begin
                            thr <= tmem[cf_in];
                        end
                    end
                end else begin : g_one
                    always @(posedge clk) begin
                        if (en) begin
                            thr <= tmem[0];
                        end
                    end
                end
            end else begin : g_next
                reg [K-1:0] r_reg;
                wire [K-1:0] r_prev = g_stage[s-1].r_next;
                // the address: this pixel's fold and the s bits decided so far
                wire [s-1:0] level_idx = r_prev[K-1 -: s];
                always @(posedge clk) begin
                    if (en) begin
                        x <= g_stage[s-1].x;
                        r_reg <= r_prev;
                    end
                end
                if (CF > 1) begin : g_addr
                    wire [CFW-1:0] cf_prev = cf[(s-1)*CFW +: CFW];
                    always @(posedge clk) begin
                        if (en) begin
                            thr <= tmem[{cf_prev, level_idx}];
                        end
                    end
                end else begin : g_one
                    always @(posedge clk) begin
                        if (en) begin
                            thr <= tmem[level_idx];
                        end
                    end
                end
                assign r = r_reg;
            end

            wire x_sign = (SIGNED != 0) ? x[IN_BITS-1] : 1'b0;
            wire [CMPW-1:0] x_ext = {{(CMPW-IN_BITS){x_sign}}, x};
            wire [CMPW-1:0] t_ext = {{(CMPW-T_BITS){thr[T_BITS-1]}}, thr};
            wire meets = ($signed(x_ext) >= $signed(t_ext));
            localparam [31:0] BIT_32 = 1 << (K - 1 - s);
            assign r_next = r | (meets ? BIT_32[K-1:0] : {K{1'b0}});
        end

        assign result[j*K +: K] = g_stage[K-1].r_next;
    end
endgenerate

// the fold of the last search stage: which channels its lanes hold
wire [CFW-1:0] cf_last = cf[(K-1)*CFW +: CFW];
wire [LANES*K-1:0] flip_mask;
generate
    for (j = 0; j < LANES; j = j + 1) begin : g_flip
        wire [C-1:0] flips = OUT_FLIP;
        wire flip = (CF > 1) ? flips[cf_last * LANES + j] : flips[j];
        assign flip_mask[j*K +: K] = {K{flip}};
    end
endgenerate

always @(posedge clk) begin
    if (en) begin
        out_data_reg <= result ^ flip_mask;
    end
end

assign out_data = out_data_reg;
assign out_valid = out_valid_reg;

endmodule

`resetall
