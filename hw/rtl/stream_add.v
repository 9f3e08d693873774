// Elementwise sum of two integer streams (the Add of a residual block).
//
// Each beat carries LANES integers of IN_BITS bits (lane j at bits
// [j*IN_BITS +: IN_BITS]), two's complement if SIGNED, else unsigned; both
// inputs have the same format, as both operands of a residual Add come from
// one quantizer. The output lane j is in0_j + in1_j, computed exactly in
// IN_BITS + 1 bits and then sign- (SIGNED) or zero-extended to OUT_BITS; an
// OUT_BITS below IN_BITS + 1 keeps the low OUT_BITS bits (modulo 2^OUT_BITS),
// for a caller that knows the sum's range is smaller.
//
// Join: a pair of beats is consumed only when both inputs are valid (each
// ready is high only while the other input is valid, which AXI-Stream
// allows: ready may depend on valid, valid never on ready), so the two
// streams stay aligned beat for beat. One pair per cycle while the output
// register is free or read; in_ready depends combinationally on out_ready
// (as in mvtu). Latency: the sum is valid the cycle after the pair was taken.
`resetall
`timescale 1ns / 1ps
`default_nettype none

module stream_add #(
    parameter LANES = 2,
    parameter IN_BITS = 4,
    parameter SIGNED = 1,
    parameter OUT_BITS = IN_BITS + 1
) (
    input  wire                      clk,
    input  wire                      rst_n,

    input  wire [LANES*IN_BITS-1:0]  in0_data,
    input  wire                      in0_valid,
    output wire                      in0_ready,

    input  wire [LANES*IN_BITS-1:0]  in1_data,
    input  wire                      in1_valid,
    output wire                      in1_ready,

    output wire [LANES*OUT_BITS-1:0] out_data,
    output wire                      out_valid,
    input  wire                      out_ready
);

localparam SW = IN_BITS + 1;     // exact sum width

generate
    if (LANES < 1 || IN_BITS < 1 || OUT_BITS < 1) begin : g_err_range
        stream_add_error_LANES_IN_BITS_OUT_BITS_must_be_positive u_err();
    end
    if (SIGNED != 0 && SIGNED != 1) begin : g_err_signed
        stream_add_error_SIGNED_must_be_0_or_1 u_err();
    end
endgenerate

reg out_valid_reg;
reg [LANES*OUT_BITS-1:0] out_data_reg;

wire en = !out_valid_reg || out_ready;
assign in0_ready = en && in1_valid;
assign in1_ready = en && in0_valid;
wire fire = en && in0_valid && in1_valid;

wire [LANES*OUT_BITS-1:0] sum;

genvar j;
generate
    for (j = 0; j < LANES; j = j + 1) begin : g_lane
        wire [IN_BITS-1:0] a = in0_data[j*IN_BITS +: IN_BITS];
        wire [IN_BITS-1:0] b = in1_data[j*IN_BITS +: IN_BITS];
        // one extension bit: the operands' sign (SIGNED) or zero
        wire a_ext = (SIGNED != 0) ? a[IN_BITS-1] : 1'b0;
        wire b_ext = (SIGNED != 0) ? b[IN_BITS-1] : 1'b0;
        wire [SW-1:0] s = {a_ext, a} + {b_ext, b};
        if (OUT_BITS > SW) begin : g_extend
            wire s_ext = (SIGNED != 0) ? s[SW-1] : 1'b0;
            assign sum[j*OUT_BITS +: OUT_BITS] = {{(OUT_BITS-SW){s_ext}}, s};
        end else if (OUT_BITS == SW) begin : g_same
            assign sum[j*OUT_BITS +: OUT_BITS] = s;
        end else begin : g_wrap
            assign sum[j*OUT_BITS +: OUT_BITS] = s[OUT_BITS-1:0];
            wire unused_high = &{1'b0, s[SW-1:OUT_BITS]};
        end
    end
endgenerate

always @(posedge clk) begin
    if (!rst_n) begin
        out_valid_reg <= 1'b0;
    end else if (en) begin
        out_valid_reg <= fire;
    end
end

always @(posedge clk) begin
    if (fire) begin
        out_data_reg <= sum;
    end
end

assign out_data = out_data_reg;
assign out_valid = out_valid_reg;

endmodule

`resetall
