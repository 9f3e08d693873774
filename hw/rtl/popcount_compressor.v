// Population count of an N-bit vector as a compressor tree: 6:3 counters, then
// a narrow adder tree of their 3-bit counts.
//
// Each group of six input bits is counted by a 6:3 counter written as full
// adders (XOR/majority gates, no '+'): every output bit depends on six inputs
// only, so the counter maps to three LUT6 and stays LUT logic. The ceil(N/6)
// counts then go through adder_tree (IN_W = 3). Written with '+' all the way
// down, a tree registered between its levels costs about 2.6-2.9 LUT per input
// bit in Yosys synth_xilinx, because the registers stop Yosys from merging the
// adders into one multi-operand sum; the counters leave a tree a sixth as wide.
//
// PIPE_EVERY = 0: combinational (clk and en unused). PIPE_EVERY = k > 0: the
// counter outputs are registered, then adder_tree registers every k of its
// clog2(G) levels (G = ceil(N/6)); out_data follows in_data by
// LATENCY = 1 + (clog2(G) > 1 ? (clog2(G)-1)/k : 0) enabled edges.
// Output width $clog2(N)+1 holds the all-ones count N.
`resetall
`timescale 1ns / 1ps
`default_nettype none

module popcount_compressor #(
    parameter N = 8,
    parameter OUT_W = $clog2(N) + 1,
    parameter PIPE_EVERY = 0
) (
    input  wire             clk,
    input  wire             en,
    input  wire [N-1:0]     in_data,
    output wire [OUT_W-1:0] out_data
);

localparam G = (N + 5) / 6;
localparam TW = 3 + $clog2(G);  // adder_tree output width

generate
    if (N < 1) begin : g_err_n
        popcount_compressor_error_N_must_be_positive u_err();
    end
    if (OUT_W != $clog2(N) + 1) begin : g_err_w
        popcount_compressor_error_OUT_W_must_be_clog2_N_plus_1 u_err();
    end
    if (PIPE_EVERY < 0) begin : g_err_pipe
        popcount_compressor_error_PIPE_EVERY_must_be_nonnegative u_err();
    end
endgenerate

wire [6*G-1:0] bits;
generate
    if (6*G > N) begin : g_pad
        assign bits = {{(6*G-N){1'b0}}, in_data};
    end else begin : g_nopad
        assign bits = in_data;
    end
endgenerate

wire [3*G-1:0] counts;
genvar g;
generate
    for (g = 0; g < G; g = g + 1) begin : g_ctr
        wire [5:0] b = bits[6*g +: 6];
        // two full adders of three bits each, then the weight-2 column (both
        // carries and the carry of the two sums) through a third
        wire s1 = b[0] ^ b[1] ^ b[2];
        wire c1 = (b[0] & b[1]) | (b[2] & (b[0] ^ b[1]));
        wire s2 = b[3] ^ b[4] ^ b[5];
        wire c2 = (b[3] & b[4]) | (b[5] & (b[3] ^ b[4]));
        wire h = s1 & s2;
        wire s3 = c1 ^ c2 ^ h;
        wire c3 = (c1 & c2) | (h & (c1 ^ c2));
        assign counts[3*g +: 3] = {c3, s3, s1 ^ s2};
    end
endgenerate

wire [3*G-1:0] leaves;
generate
    if (PIPE_EVERY > 0) begin : g_reg
        reg [3*G-1:0] counts_r;
        always @(posedge clk) begin
            if (en) begin
                counts_r <= counts;
            end
        end
        assign leaves = counts_r;
    end else begin : g_comb
        assign leaves = counts;
    end
endgenerate

wire [TW-1:0] total;
adder_tree #(
    .N(G),
    .IN_W(3),
    .SIGNED(0),
    .PIPE_EVERY(PIPE_EVERY)
) u_tree (
    .clk(clk),
    .en(en),
    .in_data(leaves),
    .out_data(total)
);

// The count is at most N < 2^OUT_W: the tree's extra top bits are zero.
generate
    if (TW > OUT_W) begin : g_trunc
        assign out_data = total[OUT_W-1:0];
        wire unused_hi = &{1'b0, total[TW-1:OUT_W]};
    end else if (TW < OUT_W) begin : g_ext
        assign out_data = {{(OUT_W-TW){1'b0}}, total};
    end else begin : g_same
        assign out_data = total;
    end
    if (PIPE_EVERY == 0) begin : g_unused
        wire unused_clk_en = &{1'b0, clk, en};
    end
endgenerate

endmodule

`resetall
