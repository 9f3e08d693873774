// Global sum pooling: per frame, the sum over all PIXELS pixels of every
// channel (a global average pool is this sum with the 1/PIXELS folded into
// whatever follows, e.g. the next thresholds).
//
// Input: frames of PIXELS (= H*W) pixels, channels last, each pixel CF =
// C/PE beats of PE integers of IN_BITS bits (lane j of beat f = channel
// f*PE + j), two's complement if SIGNED, else unsigned ({0,1} activations are
// IN_BITS = 1 unsigned). Output: CF beats per frame, lane j of beat f the sum
// of channel f*PE + j in ACC_BITS two's complement (SIGNED) or unsigned bits.
// The default ACC_BITS = IN_BITS + clog2(PIXELS) always holds the sum; a
// smaller one keeps it modulo 2^ACC_BITS.
//
// An accumulator memory of CF words (PE*ACC_BITS bits, asynchronous read:
// LUT RAM) holds the partial sums of the frame; each input beat is one
// read-modify-write of its word (the first pixel overwrites), and the beats
// of the last pixel go to the output register instead, so the sums leave as
// the last pixel arrives. One input beat per clock: in_ready is low only
// when a beat of the last pixel is offered while the output register holds
// a beat the consumer does not take in this cycle (a combinational path from
// out_ready, as in maxpool_bin). Latency: a sum is valid the cycle after the
// beat completing it was taken.
`resetall
`timescale 1ns / 1ps
`default_nettype none

module global_pool #(
    parameter PIXELS = 4,          // H*W
    parameter C = 4,               // channels, a multiple of PE
    parameter PE = 2,              // lanes per beat
    parameter IN_BITS = 4,
    parameter SIGNED = 0,
    parameter ACC_BITS = IN_BITS + $clog2(PIXELS)
) (
    input  wire                     clk,
    input  wire                     rst_n,

    input  wire [PE*IN_BITS-1:0]    in_data,
    input  wire                     in_valid,
    output wire                     in_ready,

    output wire [PE*ACC_BITS-1:0]   out_data,
    output wire                     out_valid,
    input  wire                     out_ready
);

localparam CF = (PE > 0) ? C / PE : 1;
localparam CFW = (CF > 1) ? $clog2(CF) : 1;
localparam PW = (PIXELS > 1) ? $clog2(PIXELS) : 1;
localparam AW = PE * ACC_BITS;

generate
    if (PE < 1 || C < 1 || C % PE != 0) begin : g_err_pe
        global_pool_error_C_not_a_positive_multiple_of_PE u_err();
    end
    if (PIXELS < 1 || IN_BITS < 1 || ACC_BITS < IN_BITS || (SIGNED != 0 && SIGNED != 1)) begin : g_err_bits
        global_pool_error_PIXELS_IN_BITS_positive_ACC_BITS_ge_IN_BITS_SIGNED_0_or_1 u_err();
    end
endgenerate

localparam [31:0] CF_LAST = CF - 1;
localparam [31:0] PIX_LAST = PIXELS - 1;

reg [CFW-1:0] cf;
reg [PW-1:0] pix;
reg out_valid_reg;
reg [AW-1:0] out_data_reg;

wire cf_last = (cf == CF_LAST[CFW-1:0]);
wire first = (pix == {PW{1'b0}});
wire emit = (pix == PIX_LAST[PW-1:0]);

assign in_ready = !emit || !out_valid_reg || out_ready;
wire fire = in_valid && in_ready;

reg [AW-1:0] acc_mem [0:CF-1];
wire [AW-1:0] part = acc_mem[cf];
wire [AW-1:0] sum;

genvar j;
generate
    for (j = 0; j < PE; j = j + 1) begin : g_lane
        wire [IN_BITS-1:0] x = in_data[j*IN_BITS +: IN_BITS];
        wire x_sign = (SIGNED != 0) ? x[IN_BITS-1] : 1'b0;
        wire [ACC_BITS-1:0] x_ext;
        if (ACC_BITS > IN_BITS) begin : g_ext
            assign x_ext = {{(ACC_BITS-IN_BITS){x_sign}}, x};
        end else begin : g_same
            assign x_ext = x;
            wire unused_sign = x_sign;
        end
        wire [ACC_BITS-1:0] p = first ? {ACC_BITS{1'b0}} : part[j*ACC_BITS +: ACC_BITS];
        assign sum[j*ACC_BITS +: ACC_BITS] = p + x_ext;
    end
endgenerate

always @(posedge clk) begin
    if (fire && !emit) begin
        acc_mem[cf] <= sum;
    end
end

always @(posedge clk) begin
    if (!rst_n) begin
        cf <= {CFW{1'b0}};
        pix <= {PW{1'b0}};
    end else if (fire) begin
        if (cf_last) begin
            cf <= {CFW{1'b0}};
            pix <= emit ? {PW{1'b0}} : pix + 1'b1;
        end else begin
            cf <= cf + 1'b1;
        end
    end
end

always @(posedge clk) begin
    if (!rst_n) begin
        out_valid_reg <= 1'b0;
    end else if (fire && emit) begin
        out_valid_reg <= 1'b1;
    end else if (out_ready) begin
        out_valid_reg <= 1'b0;
    end
end

always @(posedge clk) begin
    if (fire && emit) begin
        out_data_reg <= sum;
    end
end

assign out_data = out_data_reg;
assign out_valid = out_valid_reg;

endmodule

`resetall
