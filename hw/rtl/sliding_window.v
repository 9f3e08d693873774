// Sliding-window (im2col) generator for a K x K convolution, stride S.
//
// Input: frames of IFM_DIM x IFM_DIM pixels, row-major (y major, x minor),
// channels last: a pixel is C elements of EB bits, sent as SF = C/SIMD beats
// of SIMD elements (channel k*SIMD + j in bits [j*EB +: EB] of beat k).
// Output: for every output pixel (oy major, ox minor) of the
// OFM_DIM x OFM_DIM map, OFM_DIM = floor((IFM_DIM + 2*PAD - K)/S) + 1, the
// K*K*C-element window in order (ky, kx, c), c minor, as K*K*SF beats of SIMD
// elements: exactly the MW = K*K*C input vector of the mvtu that follows.
// Window positions outside the image (zero padding, PAD on every side) read
// as the all-zero element word. See docs/hw_interfaces.md.
//
// Storage: a ring of NR = 2*K + S image rows (IFM_DIM*SF words of SIMD*EB
// bits each, one inferred simple-dual-port RAM with a registered read). The
// writer fills rows in arrival order, one beat per cycle, whenever a row slot
// is free; it knows nothing about frames. The reader walks
// (oy, ox, ky, kx, sf) and may start output row oy once the input rows it
// needs are complete; at that moment it releases the rows no later output
// row of the frame needs. Rows of a frame that no output row reads (floor
// mode, stride > K) are released when the next frame's first output row
// starts. NR covers the worst case of one frame's last rows plus the next
// frame's first K rows, so the next frame streams in while the previous one
// is still being emitted, and mid-frame the writer always has S free rows to
// fill while the reader emits from K rows.
//
// Rows are tracked by count, not by content: `occ` complete rows sit in the
// ring starting at slot `rslot`, and `rb` is the frame-relative index of that
// oldest row plus a bias B = K + S (rb < B while that row still belongs to
// the previous frame). The row in progress is written to
// slot rslot + occ; the reader only reads complete rows, so a read and a
// write never meet at one address.
//
// Timing: the reader issues one beat per cycle (address, RAM read into the
// output register), stalled as a whole while the output beat is not taken
// (in_ready of the writer does not depend on out_ready). It never pauses
// between windows, rows or frames when the rows are there. With always-valid
// input and an always-ready consumer, back-to-back frames take
// max(OFM_DIM^2*K*K*SF, IFM_DIM^2*SF) cycles each (output- or input-bound;
// measured exactly so for every shape in tests/hw/test_sliding_window.py).
// The first beat of a frame is valid the cycle after input row
// max(1, min(K - PAD, IFM_DIM)) - 1 of that frame is complete: no beat of a
// frame, not even one wholly in the top padding, precedes its first row.
`resetall
`timescale 1ns / 1ps
`default_nettype none

module sliding_window #(
    parameter IFM_DIM = 8,   // input height = width
    parameter C = 4,         // channels
    parameter K = 3,         // kernel height = width
    parameter S = 1,         // stride
    parameter PAD = 0,       // zero padding on every side
    parameter EB = 1,        // bits per element
    parameter SIMD = 2       // elements per beat (divides C)
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
localparam PD = IFM_DIM + 2 * PAD;
localparam OFM_DIM = (PD >= K && S > 0) ? (PD - K) / S + 1 : 1;
localparam NR = 2 * K + S;            // ring rows
localparam ROWW = IFM_DIM * SF;       // words per image row
localparam DEPTH = NR * ROWW;
localparam WIN = K * SF;              // beats per window row (kx, sf)
localparam B = K + S;                 // bias of rb
localparam AW = (DEPTH > 1) ? $clog2(DEPTH) : 1;
// one width for every row/column/address computation (all unsigned)
localparam UW = $clog2(DEPTH + 2 * PD * SF + 2 * IFM_DIM + 4 * NR + 4 * B + 8) + 1;
localparam JW = (WIN > 1) ? $clog2(WIN) : 1;
localparam KW = (K > 1) ? $clog2(K) : 1;
localparam OW = (OFM_DIM > 1) ? $clog2(OFM_DIM) : 1;
localparam CW = (ROWW > 1) ? $clog2(ROWW) : 1;
localparam RW = $clog2(NR + 1);
localparam SLW = $clog2(NR);

generate
    if (SIMD < 1 || C < 1 || C % SIMD != 0) begin : g_err_simd
        sliding_window_error_C_not_divisible_by_SIMD u_err();
    end
    if (K < 1 || S < 1 || PAD < 0 || EB < 1 || IFM_DIM < 1) begin : g_err_range
        sliding_window_error_K_S_EB_IFM_DIM_must_be_positive_PAD_nonnegative u_err();
    end
    if (K > PD) begin : g_err_k
        sliding_window_error_K_larger_than_padded_input u_err();
    end
endgenerate

// 32-bit constants, sliced where used, keep the lint width checks quiet
localparam [31:0] WIN_LAST = WIN - 1;
localparam [31:0] K_LAST = K - 1;
localparam [31:0] OFM_LAST = OFM_DIM - 1;
localparam [31:0] ROWW_LAST = ROWW - 1;
localparam [31:0] DEPTH_LAST = DEPTH - 1;
localparam [31:0] NR_32 = NR;
localparam [31:0] K_32 = K;
localparam [31:0] S_32 = S;
localparam [31:0] B_32 = B;
localparam [31:0] PAD_32 = PAD;
localparam [31:0] IFM_32 = IFM_DIM;
localparam [31:0] PADE_32 = PAD + IFM_DIM;      // first padded row/column after the image
localparam [31:0] PADSF_32 = PAD * SF;
localparam [31:0] PADESF_32 = (PAD + IFM_DIM) * SF;
localparam [31:0] SSF_32 = S * SF;
localparam [31:0] ROWW_32 = ROWW;

localparam [UW-1:0] U_NR = NR_32[UW-1:0];
localparam [UW-1:0] U_B = B_32[UW-1:0];
localparam [UW-1:0] U_PAD = PAD_32[UW-1:0];
localparam [UW-1:0] U_IFM = IFM_32[UW-1:0];
localparam [UW-1:0] U_ZERO = {UW{1'b0}};

// ---------------------------------------------------------------- state
reg [RW-1:0] occ;          // complete rows in the ring
reg [SLW-1:0] rslot;       // slot of the oldest of them
reg [UW-1:0] rb;           // its frame-relative row index + B

wire [UW-1:0] occ_u = {{(UW-RW){1'b0}}, occ};
wire [UW-1:0] rslot_u = {{(UW-SLW){1'b0}}, rslot};

// ---------------------------------------------------------------- writer
reg [AW-1:0] wa;           // RAM address of the next input word
reg [CW-1:0] wcol;         // word within the row being written

assign in_ready = (occ < NR_32[RW-1:0]);
wire wr = in_valid && in_ready;
wire row_done = wr && (wcol == ROWW_LAST[CW-1:0]);

always @(posedge clk) begin
    if (!rst_n) begin
        wa <= {AW{1'b0}};
        wcol <= {CW{1'b0}};
    end else if (wr) begin
        wa <= (wa == DEPTH_LAST[AW-1:0]) ? {AW{1'b0}} : wa + 1'b1;
        wcol <= row_done ? {CW{1'b0}} : wcol + 1'b1;
    end
end

reg [W-1:0] mem [0:DEPTH-1];

always @(posedge clk) begin
    if (wr) begin
        mem[wa] <= in_data;
    end
end

// ---------------------------------------------------------------- reader
reg [JW-1:0] j;            // kx*SF + sf
reg [KW-1:0] ky;
reg [OW-1:0] ox;
reg [OW-1:0] oy;
reg [UW-1:0] xs;           // ox*S*SF
reg [UW-1:0] colb;         // (ox*S + kx)*SF + sf: padded column word
reg [UW-1:0] y0;           // oy*S
reg [UW-1:0] py;           // oy*S + ky: padded row

reg s1_valid;
reg pad_q;
reg [W-1:0] rd_q;

wire en = !s1_valid || out_ready;

wire j_last = (j == WIN_LAST[JW-1:0]);
wire ky_last = (ky == K_LAST[KW-1:0]);
wire ox_last = (ox == OFM_LAST[OW-1:0]);
wire oy_last = (oy == OFM_LAST[OW-1:0]);
wire row_start = (j == {JW{1'b0}}) && (ky == {KW{1'b0}}) && (ox == {OW{1'b0}});
wire frame_last = j_last && ky_last && ox_last && oy_last;

// input rows [keep, need) of this frame are read by output row oy (clipped
// to the image); rows below keep are not needed any more
wire [UW-1:0] y0k = y0 + K_32[UW-1:0];
wire y0_lo, y0k_lo, py_lo, colb_lo;     // below the padding border
wire [UW-1:0] keep = y0_lo ? U_ZERO :
                     (y0 - U_PAD > U_IFM) ? U_IFM : y0 - U_PAD;
// (need is at least 1: no output of a frame, not even a row that lies
// wholly in the top padding, before the frame's first input row is in)
wire [UW-1:0] need_raw = y0k_lo ? U_ZERO :
                         (y0k - U_PAD > U_IFM) ? U_IFM : y0k - U_PAD;
wire [UW-1:0] need = (need_raw == U_ZERO) ? {{(UW-1){1'b0}}, 1'b1} : need_raw;
wire row_ok = !row_start || (rb + occ_u >= need + U_B);
wire issue = en && row_ok;

// rows released when output row oy starts (fewer than NR)
wire [UW-1:0] free_n = keep + U_B - rb;
wire [UW-1:0] rslot_sum = rslot_u + free_n;
wire [UW-1:0] rslot_nx = (rslot_sum >= U_NR) ? rslot_sum - U_NR : rslot_sum;

generate
    if (PAD > 0) begin : g_pad
        assign y0_lo = (y0 < U_PAD);
        assign y0k_lo = (y0k < U_PAD);
        assign py_lo = (py < U_PAD);
        assign colb_lo = (colb < PADSF_32[UW-1:0]);
    end else begin : g_nopad
        // (written out: an unsigned "< 0" is a lint warning)
        assign y0_lo = 1'b0;
        assign y0k_lo = 1'b0;
        assign py_lo = 1'b0;
        assign colb_lo = 1'b0;
    end
endgenerate

// RAM address of the current beat (meaningful when not padding)
wire pad_y = py_lo || (py >= PADE_32[UW-1:0]);
wire pad_x = colb_lo || (colb >= PADESF_32[UW-1:0]);
wire pad = pad_x || pad_y;
wire [UW-1:0] d = py + U_B - U_PAD - rb;          // ring offset of input row py - PAD
wire [UW-1:0] slot_sum = rslot_u + d;
wire [UW-1:0] slot = (slot_sum >= U_NR) ? slot_sum - U_NR : slot_sum;
wire [UW-1:0] addr_u = slot * ROWW_32[UW-1:0] + colb - PADSF_32[UW-1:0];
wire [AW-1:0] rd_addr = pad ? {AW{1'b0}} : addr_u[AW-1:0];
wire unused_addr_hi = &{1'b0, addr_u[UW-1:AW]};

always @(posedge clk) begin
    if (!rst_n) begin
        j <= {JW{1'b0}};
        ky <= {KW{1'b0}};
        ox <= {OW{1'b0}};
        oy <= {OW{1'b0}};
        xs <= U_ZERO;
        colb <= U_ZERO;
        y0 <= U_ZERO;
        py <= U_ZERO;
    end else if (issue) begin
        if (j_last) begin
            j <= {JW{1'b0}};
            if (ky_last) begin
                ky <= {KW{1'b0}};
                if (ox_last) begin
                    ox <= {OW{1'b0}};
                    xs <= U_ZERO;
                    colb <= U_ZERO;
                    if (oy_last) begin
                        oy <= {OW{1'b0}};
                        y0 <= U_ZERO;
                        py <= U_ZERO;
                    end else begin
                        oy <= oy + 1'b1;
                        y0 <= y0 + S_32[UW-1:0];
                        py <= y0 + S_32[UW-1:0];
                    end
                end else begin
                    ox <= ox + 1'b1;
                    xs <= xs + SSF_32[UW-1:0];
                    colb <= xs + SSF_32[UW-1:0];
                    py <= y0;
                end
            end else begin
                ky <= ky + 1'b1;
                py <= py + 1'b1;
                colb <= xs;
            end
        end else begin
            j <= j + 1'b1;
            colb <= colb + 1'b1;
        end
    end
end

// ring bookkeeping: the writer completes rows, the reader releases them
wire release_rows = issue && row_start;
wire [UW-1:0] rb_rel = release_rows ? keep + U_B : rb;
wire [UW-1:0] occ_nx = occ_u + {{(UW-1){1'b0}}, row_done} - (release_rows ? free_n : U_ZERO);
wire unused_occ_hi = &{1'b0, occ_nx[UW-1:RW]};

always @(posedge clk) begin
    if (!rst_n) begin
        occ <= {RW{1'b0}};
        rslot <= {SLW{1'b0}};
        rb <= U_B;
    end else begin
        occ <= occ_nx[RW-1:0];
        if (release_rows) begin
            rslot <= rslot_nx[SLW-1:0];
        end
        if (issue) begin
            // after a frame's last beat, indices count from the next frame
            rb <= frame_last ? rb_rel - U_IFM : rb_rel;
        end
    end
end

wire unused_slot_hi = &{1'b0, rslot_nx[UW-1:SLW]};

// read stage: RAM output register = output register
always @(posedge clk) begin
    if (!rst_n) begin
        s1_valid <= 1'b0;
    end else if (en) begin
        s1_valid <= row_ok;
    end
end

always @(posedge clk) begin
    if (issue) begin
        rd_q <= mem[rd_addr];
        pad_q <= pad;
    end
end

assign out_data = pad_q ? {W{1'b0}} : rd_q;
assign out_valid = s1_valid;

endmodule

`resetall
