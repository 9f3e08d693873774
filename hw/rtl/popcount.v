// Population count of an N-bit vector, as an adder tree of 1-bit leaves.
//
// Output width is $clog2(N)+1 so that the all-ones case (value N) fits even
// when N is a power of two. PIPE_EVERY as in adder_tree (0: combinational).
`resetall
`timescale 1ns / 1ps
`default_nettype none

module popcount #(
    parameter N = 8,
    parameter OUT_W = $clog2(N) + 1,
    parameter PIPE_EVERY = 0
) (
    input  wire             clk,
    input  wire             en,
    input  wire [N-1:0]     in_data,
    output wire [OUT_W-1:0] out_data
);

adder_tree #(
    .N(N),
    .IN_W(1),
    .SIGNED(0),
    .OUT_W(OUT_W),
    .PIPE_EVERY(PIPE_EVERY)
) u_tree (
    .clk(clk),
    .en(en),
    .in_data(in_data),
    .out_data(out_data)
);

endmodule

`resetall
