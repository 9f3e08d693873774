// Register slice (skid buffer) for a valid/ready stream.
//
// Cuts every combinational path through a stream: out_valid/out_data come
// from the main register and in_ready from the skid register's empty flag, so
// neither direction sees the other side's signals in the same cycle. Full
// throughput: while out_ready stays high the skid register is never used.
// When the consumer stalls, the beat that was already promised by in_ready
// lands in the skid register and in_ready drops on the next edge.
`resetall
`timescale 1ns / 1ps
`default_nettype none

module stream_skid #(
    parameter WIDTH = 8
) (
    input  wire             clk,
    input  wire             rst_n,

    input  wire [WIDTH-1:0] in_data,
    input  wire             in_valid,
    output wire             in_ready,

    output wire [WIDTH-1:0] out_data,
    output wire             out_valid,
    input  wire             out_ready
);

generate
    if (WIDTH < 1) begin : g_err_width
        stream_skid_error_WIDTH_must_be_at_least_1 u_err();
    end
endgenerate

reg [WIDTH-1:0] main_data;
reg [WIDTH-1:0] skid_data;
reg main_valid;
reg skid_valid;

// the main register can take a new beat when it is empty or being read
wire main_load = out_ready || !main_valid;
wire in_fire = in_valid && !skid_valid;

always @(posedge clk) begin
    if (!rst_n) begin
        main_valid <= 1'b0;
        skid_valid <= 1'b0;
    end else if (main_load) begin
        main_valid <= skid_valid || in_valid;
        skid_valid <= 1'b0;
    end else if (in_fire) begin
        skid_valid <= 1'b1;
    end
end

always @(posedge clk) begin
    if (main_load) begin
        main_data <= skid_valid ? skid_data : in_data;
    end
    if (!main_load && in_fire) begin
        skid_data <= in_data;
    end
end

assign in_ready = !skid_valid;
assign out_valid = main_valid;
assign out_data = main_data;

endmodule

`resetall
