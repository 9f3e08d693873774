// Result queue with credit: the flow control of a pipeline that never stalls.
//
// A pipeline that cannot hold its data (no stall enable inside) promises a
// result when it starts the work (take) and delivers it DEPTH or fewer
// results later into this queue (in_valid). credit is high while fewer than
// DEPTH results are promised and not yet taken at the output, so a producer
// that starts work only on credit never finds the queue full. credit is a
// register: the producer's handshake sees no combinational path from
// out_ready. With DEPTH above the pipeline's round trip (issue to the queue's
// read), a consumer that is always ready never withholds the credit.
`resetall
`timescale 1ns / 1ps
`default_nettype none

module credit_queue #(
    parameter WIDTH = 8,
    parameter DEPTH = 4
) (
    input  wire             clk,
    input  wire             rst_n,

    input  wire             take,       // a result is promised this cycle (needs credit)
    output wire             credit,     // fewer than DEPTH results promised and not taken

    input  wire [WIDTH-1:0] in_data,
    input  wire             in_valid,

    output wire [WIDTH-1:0] out_data,
    output wire             out_valid,
    input  wire             out_ready
);

localparam CRW = $clog2(DEPTH + 1);
localparam [31:0] DEPTH_32 = DEPTH;

generate
    if (DEPTH < 2) begin : g_err_depth
        credit_queue_error_DEPTH_must_be_at_least_2 u_err();
    end
endgenerate

reg [CRW-1:0] pending;
reg credit_r;
wire out_fire = out_valid && out_ready;

always @(posedge clk) begin
    if (!rst_n) begin
        pending <= {CRW{1'b0}};
        credit_r <= 1'b1;
    end else if (take && !out_fire) begin
        pending <= pending + 1'b1;
        credit_r <= (pending + 1'b1 != DEPTH_32[CRW-1:0]);
    end else if (out_fire && !take) begin
        pending <= pending - 1'b1;
        credit_r <= 1'b1;
    end
end

assign credit = credit_r;

// the credit guarantees room: the FIFO's in_ready is never low at a write
wire q_ready;
wire unused_q_ready = q_ready;

stream_fifo #(
    .WIDTH(WIDTH),
    .DEPTH(DEPTH)
) u_fifo (
    .clk(clk),
    .rst_n(rst_n),
    .in_data(in_data),
    .in_valid(in_valid),
    .in_ready(q_ready),
    .out_data(out_data),
    .out_valid(out_valid),
    .out_ready(out_ready)
);

endmodule

`resetall
