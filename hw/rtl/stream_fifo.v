// Valid/ready FIFO of DEPTH words.
//
// Storage is a plain array with an asynchronous read (distributed RAM /
// LUTRAM on FPGAs), so a word written in one cycle is offered the next and the
// FIFO moves one beat per cycle in and out whenever it is neither empty nor
// full. in_ready and out_valid come straight from registers: no combinational
// path crosses the FIFO, which is why layers are joined through one. The price
// is that a full FIFO does not accept in the same cycle it is read (so a
// DEPTH=1 FIFO runs at half rate; use DEPTH >= 2 for full throughput).
`resetall
`timescale 1ns / 1ps
`default_nettype none

module stream_fifo #(
    parameter WIDTH = 8,
    parameter DEPTH = 4
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

localparam AW = (DEPTH > 1) ? $clog2(DEPTH) : 1;
localparam CW = $clog2(DEPTH + 1);
localparam [31:0] LAST_32 = DEPTH - 1;
localparam [31:0] DEPTH_32 = DEPTH;
localparam [31:0] ONE_32 = 1;

generate
    if (DEPTH < 1) begin : g_err_depth
        stream_fifo_error_DEPTH_must_be_at_least_1 u_err();
    end
endgenerate

reg [AW-1:0] wr_ptr;
reg [AW-1:0] rd_ptr;
reg [CW-1:0] count;
reg full;
reg empty;

wire wr = in_valid && !full;
wire rd = out_ready && !empty;

// Up to LUTRAM_DEPTH words the storage is asked to be distributed RAM: left
// to itself Yosys put a 34-deep link FIFO of LFC into ECP5 block RAM by moving
// the read pointer's register into the RAM, so the consumer saw the RAM's
// slow clock-to-out in the same cycle (LFC placed and routed: 93 MHz).
// Deeper FIFOs (residual skip FIFOs) are left to the tool.
localparam LUTRAM_DEPTH = 256;
generate
    if (DEPTH <= LUTRAM_DEPTH) begin : g_lutram
        (* ram_style = "distributed" *)
        reg [WIDTH-1:0] mem [0:DEPTH-1];
        always @(posedge clk) begin
            if (wr) begin
                mem[wr_ptr] <= in_data;
            end
        end
        assign out_data = mem[rd_ptr];
    end else begin : g_auto
        reg [WIDTH-1:0] mem [0:DEPTH-1];
        always @(posedge clk) begin
            if (wr) begin
                mem[wr_ptr] <= in_data;
            end
        end
        assign out_data = mem[rd_ptr];
    end
endgenerate

always @(posedge clk) begin
    if (!rst_n) begin
        wr_ptr <= {AW{1'b0}};
        rd_ptr <= {AW{1'b0}};
        count <= {CW{1'b0}};
        full <= 1'b0;
        empty <= 1'b1;
    end else begin
        // pointers wrap at DEPTH so any depth works, not just powers of two
        if (wr) begin
            wr_ptr <= (wr_ptr == LAST_32[AW-1:0]) ? {AW{1'b0}} : wr_ptr + 1'b1;
        end
        if (rd) begin
            rd_ptr <= (rd_ptr == LAST_32[AW-1:0]) ? {AW{1'b0}} : rd_ptr + 1'b1;
        end
        if (wr && !rd) begin
            count <= count + 1'b1;
            full <= (count + 1'b1 == DEPTH_32[CW-1:0]);
            empty <= 1'b0;
        end else if (rd && !wr) begin
            count <= count - 1'b1;
            full <= 1'b0;
            empty <= (count == ONE_32[CW-1:0]);
        end
    end
end

assign in_ready = !full;
assign out_valid = !empty;

endmodule

`resetall
