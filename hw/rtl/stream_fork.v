// Stream fork: every input beat is delivered once to each of N outputs.
//
// One shared data register and one valid bit per output. A beat enters when
// every output has either taken the previous beat already or takes it in this
// cycle, so the outputs stall independently (a ready output takes its copy
// while another is still stalled) but can be at most one beat apart; the
// branches of a residual block are decoupled by the FIFOs after the fork, not
// by the fork itself. With all outputs ready a beat passes every cycle.
//
// Outputs: beat i of output n is out_data[n*WIDTH +: WIDTH] while
// out_valid[n]; out_ready[n] is its ready. in_ready depends combinationally
// on out_ready (as in mvtu and maxpool_bin); out_valid and out_data come from
// registers. Latency: a beat is on the outputs the cycle after it was taken.
`resetall
`timescale 1ns / 1ps
`default_nettype none

module stream_fork #(
    parameter WIDTH = 8,
    parameter N = 2          // number of outputs
) (
    input  wire               clk,
    input  wire               rst_n,

    input  wire [WIDTH-1:0]   in_data,
    input  wire               in_valid,
    output wire               in_ready,

    output wire [N*WIDTH-1:0] out_data,
    output wire [N-1:0]       out_valid,
    input  wire [N-1:0]       out_ready
);

generate
    if (N < 1 || WIDTH < 1) begin : g_err_range
        stream_fork_error_N_and_WIDTH_must_be_positive u_err();
    end
endgenerate

reg [N-1:0] pending;        // output n has not yet taken the beat in data_reg
reg [WIDTH-1:0] data_reg;

// an output is free for the next beat if it holds none or hands it over now
assign in_ready = &(~pending | out_ready);
wire in_fire = in_valid && in_ready;

always @(posedge clk) begin
    if (!rst_n) begin
        pending <= {N{1'b0}};
    end else if (in_fire) begin
        pending <= {N{1'b1}};
    end else begin
        pending <= pending & ~out_ready;
    end
end

always @(posedge clk) begin
    if (in_fire) begin
        data_reg <= in_data;
    end
end

assign out_valid = pending;
assign out_data = {N{data_reg}};

endmodule

`resetall
