// Delay line for the control word that travels beside a pipelined datapath.
//
// DEPTH enabled edges from in_* to out_*: the valid bit is reset, the data
// bits are not (they are meaningful only where valid is set, and leaving them
// without reset keeps them plain flip-flops with an enable). DEPTH = 0 is a
// wire, so a unit whose pipeline depth depends on its parameters can always
// instantiate one.
`resetall
`timescale 1ns / 1ps
`default_nettype none

module pipe_delay #(
    parameter WIDTH = 1,
    parameter DEPTH = 1
) (
    input  wire             clk,
    input  wire             rst_n,
    input  wire             en,

    input  wire             in_valid,
    input  wire [WIDTH-1:0] in_data,

    output wire             out_valid,
    output wire [WIDTH-1:0] out_data
);

generate
    if (WIDTH < 1) begin : g_err_width
        pipe_delay_error_WIDTH_must_be_at_least_1 u_err();
    end
    if (DEPTH < 0) begin : g_err_depth
        pipe_delay_error_DEPTH_must_be_nonnegative u_err();
    end
    if (DEPTH <= 0) begin : g_wire
        wire unused_clk_rst_en = &{1'b0, clk, rst_n, en};
    end
endgenerate

// a negative DEPTH is reported above; D keeps the rest elaborating
localparam D = (DEPTH < 0) ? 0 : DEPTH;

genvar d;
generate
    for (d = 0; d <= D; d = d + 1) begin : g_stage
        wire v;
        wire [WIDTH-1:0] data;
        if (d == 0) begin : g_src
            assign v = in_valid;
            assign data = in_data;
        end else begin : g_reg
            reg v_r;
            reg [WIDTH-1:0] data_r;
            always @(posedge clk) begin
                if (!rst_n) begin
                    v_r <= 1'b0;
                end else if (en) begin
                    v_r <= g_stage[d-1].v;
                end
            end
            always @(posedge clk) begin
                if (en) begin
                    data_r <= g_stage[d-1].data;
                end
            end
            assign v = v_r;
            assign data = data_r;
        end
    end
endgenerate

assign out_valid = g_stage[D].v;
assign out_data = g_stage[D].data;

endmodule

`resetall
