// Stream data width converter, IN_WIDTH -> OUT_WIDTH bits, any ratio.
//
// The stream is one LSB-first bit string (docs/hw_interfaces.md): input beat k
// supplies the next IN_WIDTH bits, output beat k takes the next OUT_WIDTH
// bits. No frame boundaries are tracked; the contract guarantees that a frame
// is a multiple of both widths, so beats never straddle frames.
//
// Implementation: a bit buffer holding `fill` valid bits at the bottom.
// Output pops the low OUT_WIDTH bits; input appends IN_WIDTH bits at the
// current fill level (after this cycle's pop). in_ready and out_valid depend
// only on `fill` (registered), never combinationally on the other side.
//
// Throughput: the buffer holds IN_WIDTH + OUT_WIDTH + min(IN, OUT) - 1 bits,
// the least for which the narrower side can move one beat every cycle while
// the wider side keeps up, i.e. min(IN_WIDTH, OUT_WIDTH) bits per cycle, so
// the converter is never the bottleneck of the stream. (The wider side then
// moves a beat in a fraction narrow/wide of the cycles, which is its maximum.)
`resetall
`timescale 1ns / 1ps
`default_nettype none

module stream_dwc #(
    parameter IN_WIDTH = 16,
    parameter OUT_WIDTH = 6
) (
    input  wire                 clk,
    input  wire                 rst_n,

    input  wire [IN_WIDTH-1:0]  in_data,
    input  wire                 in_valid,
    output wire                 in_ready,

    output wire [OUT_WIDTH-1:0] out_data,
    output wire                 out_valid,
    input  wire                 out_ready
);

localparam MINW = (IN_WIDTH < OUT_WIDTH) ? IN_WIDTH : OUT_WIDTH;
localparam BW = IN_WIDTH + OUT_WIDTH + MINW - 1;
localparam FW = $clog2(BW + 1);
localparam [31:0] IN_32 = IN_WIDTH;
localparam [31:0] OUT_32 = OUT_WIDTH;
localparam [31:0] FREE_32 = BW - IN_WIDTH;  // input fits while fill <= this

generate
    if (IN_WIDTH < 1 || OUT_WIDTH < 1) begin : g_err_width
        stream_dwc_error_widths_must_be_positive u_err();
    end
endgenerate

reg [BW-1:0] buffer;
reg [FW-1:0] fill;

assign in_ready = (fill <= FREE_32[FW-1:0]);
assign out_valid = (fill >= OUT_32[FW-1:0]);
assign out_data = buffer[OUT_WIDTH-1:0];

wire in_fire = in_valid && in_ready;
wire out_fire = out_valid && out_ready;

// Bits at and above `fill` are kept zero, so appending is an OR.
wire [BW-1:0] popped = out_fire ? (buffer >> OUT_WIDTH) : buffer;
wire [FW-1:0] fill_popped = out_fire ? fill - OUT_32[FW-1:0] : fill;
wire [BW-1:0] appended = {{(BW-IN_WIDTH){1'b0}}, in_data} << fill_popped;

always @(posedge clk) begin
    if (!rst_n) begin
        buffer <= {BW{1'b0}};
        fill <= {FW{1'b0}};
    end else begin
        buffer <= in_fire ? (popped | appended) : popped;
        fill <= in_fire ? fill_popped + IN_32[FW-1:0] : fill_popped;
    end
end

endmodule

`resetall
