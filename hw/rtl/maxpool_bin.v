// Streaming P x P max pooling, stride P, of a channels-last feature map.
//
// Input: frames of IFM_DIM x IFM_DIM pixels, row-major, channels last, each
// pixel SF = C/SIMD beats of SIMD elements of EB bits (as sliding_window and
// docs/hw_interfaces.md). Output: the (IFM_DIM/P)^2 pooled pixels in the same
// format. EB = 1: max is OR (bit 1 = +1 for bipolar, 1 for {0,1}, so OR is
// the max in both); EB > 1: elements are unsigned integers.
//
// A row buffer of OFM_DIM*SF words (SIMD*EB bits, asynchronous read: LUT RAM)
// holds the partial maxima of the output row being pooled. Each input beat
// is one read-modify-write of its word (the first beat of a window
// overwrites); the beat completing a window (ky = kx = P-1) goes to the
// output register instead. One input beat per clock: in_ready is low only
// when the beat offered completes a window while the output register holds a
// beat the consumer does not take in this cycle (a combinational path from
// out_ready to in_ready, as in mvtu). Latency: the pooled beat is valid the
// cycle after the beat completing its window was accepted.
`resetall
`timescale 1ns / 1ps
`default_nettype none

module maxpool_bin #(
    parameter IFM_DIM = 4,   // input height = width, a multiple of P
    parameter C = 4,         // channels
    parameter P = 2,         // pool size = stride
    parameter SIMD = 4,      // elements per beat (divides C)
    parameter EB = 1         // bits per element (1: OR; > 1: unsigned max)
) (
    input  wire               clk,
    input  wire               rst_n,

    input  wire [SIMD*EB-1:0] in_data,
    input  wire               in_valid,
    output wire               in_ready,

    output wire [SIMD*EB-1:0] out_data,
    output wire               out_valid,
    input  wire               out_ready
);

localparam W = SIMD * EB;
localparam SF = C / SIMD;
localparam OFM_DIM = (P > 0) ? IFM_DIM / P : 1;
localparam BD = OFM_DIM * SF;         // row buffer words
localparam SFW = (SF > 1) ? $clog2(SF) : 1;
localparam PW = (P > 1) ? $clog2(P) : 1;
localparam OW = (OFM_DIM > 1) ? $clog2(OFM_DIM) : 1;
localparam BAW = (BD > 1) ? $clog2(BD) : 1;

generate
    if (SIMD < 1 || C < 1 || C % SIMD != 0) begin : g_err_simd
        maxpool_bin_error_C_not_divisible_by_SIMD u_err();
    end
    if (P < 1 || EB < 1 || IFM_DIM < 1) begin : g_err_range
        maxpool_bin_error_P_EB_IFM_DIM_must_be_positive u_err();
    end
    if (P > 0 && IFM_DIM % P != 0) begin : g_err_div
        maxpool_bin_error_IFM_DIM_not_divisible_by_P u_err();
    end
endgenerate

localparam [31:0] SF_LAST = SF - 1;
localparam [31:0] P_LAST = P - 1;
localparam [31:0] OFM_LAST = OFM_DIM - 1;

reg [SFW-1:0] sf;
reg [PW-1:0] kx;
reg [OW-1:0] ox;
reg [PW-1:0] ky;
reg [BAW-1:0] ba;          // ox*SF + sf
reg [BAW-1:0] bbase;       // ox*SF

reg out_valid_reg;
reg [W-1:0] out_data_reg;

wire sf_last = (sf == SF_LAST[SFW-1:0]);
wire kx_last = (kx == P_LAST[PW-1:0]);
wire ox_last = (ox == OFM_LAST[OW-1:0]);
wire ky_last = (ky == P_LAST[PW-1:0]);
wire first = (kx == {PW{1'b0}}) && (ky == {PW{1'b0}});
wire emit = kx_last && ky_last;

assign in_ready = !emit || !out_valid_reg || out_ready;
wire fire = in_valid && in_ready;

reg [W-1:0] rowbuf [0:BD-1];
wire [W-1:0] part = rowbuf[ba];
wire [W-1:0] pooled;

genvar e;
generate
    if (EB == 1) begin : g_or
        assign pooled = part | in_data;
    end else begin : g_max
        for (e = 0; e < SIMD; e = e + 1) begin : g_el
            wire [EB-1:0] a = part[e*EB +: EB];
            wire [EB-1:0] b = in_data[e*EB +: EB];
            assign pooled[e*EB +: EB] = (a > b) ? a : b;
        end
    end
endgenerate

wire [W-1:0] result = first ? in_data : pooled;

always @(posedge clk) begin
    if (fire && !emit) begin
        rowbuf[ba] <= result;
    end
end

always @(posedge clk) begin
    if (!rst_n) begin
        sf <= {SFW{1'b0}};
        kx <= {PW{1'b0}};
        ox <= {OW{1'b0}};
        ky <= {PW{1'b0}};
        ba <= {BAW{1'b0}};
        bbase <= {BAW{1'b0}};
    end else if (fire) begin
        if (sf_last) begin
            sf <= {SFW{1'b0}};
            if (kx_last) begin
                kx <= {PW{1'b0}};
                if (ox_last) begin
                    ox <= {OW{1'b0}};
                    ba <= {BAW{1'b0}};
                    bbase <= {BAW{1'b0}};
                    // rows are pooled independently of the frame: after
                    // the last window row the state is that of a new frame
                    ky <= ky_last ? {PW{1'b0}} : ky + 1'b1;
                end else begin
                    ox <= ox + 1'b1;
                    ba <= ba + 1'b1;        // = (ox + 1)*SF
                    bbase <= ba + 1'b1;
                end
            end else begin
                kx <= kx + 1'b1;
                ba <= bbase;
            end
        end else begin
            sf <= sf + 1'b1;
            ba <= ba + 1'b1;
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
        out_data_reg <= result;
    end
end

assign out_data = out_data_reg;
assign out_valid = out_valid_reg;

endmodule

`resetall
