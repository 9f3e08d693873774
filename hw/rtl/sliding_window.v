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
// bits each, one inferred simple-dual-port RAM with a registered read; one
// row more for a one-word row, see NR). The
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
// ring, and `rb` is the frame-relative index of the oldest of them plus a
// bias B = K + S (rb < B while that row still belongs to the previous
// frame). Row g of the input stream (counted across frames) is written to
// slot g mod NR; the reader only reads complete rows, so a read and a write
// never meet at one address.
//
// Timing: the reader issues one beat per cycle (RAM read into the output
// register), stalled as a whole while the output beat is not taken (in_ready
// of the writer does not depend on out_ready). It never pauses between
// windows, rows or frames when the rows are there. Nothing is recomputed per
// beat: the RAM address is one sum of two registers (the ring slot's base
// address and the column word, both stepped incrementally), the rows each
// output row needs and releases are precomputed while the row before it is
// emitted, and whether they are in is a register (`rows_ok`), so the issue
// decision that enables every counter and the RAM read is one LUT of
// registers. With always-valid input and an always-ready consumer,
// back-to-back frames take max(OFM_DIM^2*K*K*SF, IFM_DIM^2*SF) cycles each
// (output- or input-bound; asserted exactly so for every shape in
// tests/hw/test_sliding_window.py). The first beat of a frame is valid two
// cycles after input row max(1, min(K - PAD, IFM_DIM)) - 1 of that frame is
// complete (one cycle more than a combinational check would take: `rows_ok`
// is a register); no beat of a frame, not even one wholly in the top
// padding, precedes its first row.
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
localparam ROWW = IFM_DIM * SF;       // words per image row
// ring rows; one more where a row is one word, whose writer would otherwise
// refill the ring faster than the reader's two-cycle row check releases it
localparam NR = 2 * K + S + ((ROWW == 1) ? 1 : 0);
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

// 32-bit constants, sliced where used, keep the lint width checks quiet.
// *_PEN: one before a counter's last value (unused where it has one value)
localparam [31:0] WIN_PEN = (WIN > 1) ? WIN - 2 : 0;
localparam [31:0] K_PEN = (K > 1) ? K - 2 : 0;
localparam [31:0] OFM_PEN = (OFM_DIM > 1) ? OFM_DIM - 2 : 0;
localparam [0:0] ONE_J = (WIN == 1);
localparam [0:0] ONE_K = (K == 1);
localparam [0:0] ONE_O = (OFM_DIM == 1);
localparam [31:0] ROWW_LAST = ROWW - 1;
localparam [31:0] DEPTH_LAST = DEPTH - 1;
localparam [31:0] NR_32 = NR;
localparam [31:0] K_32 = K;
localparam [31:0] S_32 = S;
localparam [31:0] B_32 = B;
localparam [31:0] PAD_32 = PAD;
localparam [31:0] IFM_32 = IFM_DIM;
localparam [31:0] PADSF_32 = PAD * SF;
localparam [31:0] SSF_32 = S * SF;
localparam [31:0] ROWW_32 = ROWW;

localparam [UW-1:0] U_B = B_32[UW-1:0];
localparam [UW-1:0] U_PAD = PAD_32[UW-1:0];
localparam [UW-1:0] U_IFM = IFM_32[UW-1:0];
localparam [UW-1:0] U_ZERO = {UW{1'b0}};

// y0 of the last output row; nk (see need_b) of the second one, the "next" after reset
localparam [31:0] OFMS_LAST_32 = (OFM_DIM - 1) * S;
localparam [31:0] NK_RESET_32 = ((OFM_DIM > 1) ? S : 0) + K;
// ring row steps as word offsets: row -PAD of frame 0, one row, S rows, a frame
localparam [31:0] BASE_F0_32 = ((NR - PAD % NR) % NR) * ROWW;
localparam [31:0] STEP_ROW_32 = ROWW;
localparam [31:0] STEP_S_32 = (S % NR) * ROWW;
localparam [31:0] STEP_IFM_32 = (IFM_DIM % NR) * ROWW;
localparam [31:0] DEPTH_32 = DEPTH;

localparam [UW-1:0] U_ROWW = ROWW_32[UW-1:0];
localparam [UW-1:0] U_PADSF = PADSF_32[UW-1:0];
localparam [UW-1:0] U_K = K_32[UW-1:0];
localparam [UW-1:0] U_ONE = {{(UW-1){1'b0}}, 1'b1};
localparam [UW-1:0] U_ONE_LESS_IFM = U_ONE - U_IFM;    // mod 2^UW

// Row bookkeeping by value, from nk = y0 + K of an output row (y0 = oy*S):
// input rows [keep, need) of the frame are read by that row (clipped to the
// image, need at least 1: no output of a frame, not even a row wholly in the
// top padding, before the frame's first input row is in). Both are kept
// biased by B, like rb.
function [UW-1:0] need_b;
    input [UW-1:0] nk;
    begin
        if (nk <= U_PAD)
            need_b = U_ONE + U_B;
        else if (nk >= U_PAD + U_IFM)
            need_b = U_IFM + U_B;
        else
            need_b = nk - U_PAD + U_B;
    end
endfunction

function [UW-1:0] keep_b;
    input [UW-1:0] nk;
    begin
        if (nk <= U_PAD + U_K)
            keep_b = U_B;
        else if (nk >= U_PAD + U_IFM + U_K)
            keep_b = U_IFM + U_B;
        else
            keep_b = nk - U_K - U_PAD + U_B;
    end
endfunction

localparam [UW-1:0] U_NK_RESET = NK_RESET_32[UW-1:0];
localparam [UW-1:0] U_NK_FIRST = U_K;
localparam [UW-1:0] U_NK_LAST = OFMS_LAST_32[UW-1:0] + U_K;

// ---------------------------------------------------------------- state
reg [RW-1:0] occ;          // complete rows in the ring
reg [UW-1:0] rb;           // frame-relative index of the oldest of them + B
reg [UW-1:0] avail;        // rb + occ: rows of the frame complete so far + B

// ---------------------------------------------------------------- writer
// Row g of the input stream (counted across frames) lands in ring slot
// g mod NR: the write address simply wraps at DEPTH.
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
// Every position is held in the form the read needs, updated incrementally,
// so that neither the RAM address nor the issue decision is deep logic.
reg [JW-1:0] j;            // kx*SF + sf
reg [KW-1:0] ky;
reg [OW-1:0] ox;
reg [OW-1:0] oy;
reg [UW-1:0] xw;           // ox*S*SF - PAD*SF (mod 2^UW)
reg [UW-1:0] xw_n;         // xw + S*SF
reg [UW-1:0] cw;           // (ox*S + kx)*SF + sf - PAD*SF: image column word
reg [UW-1:0] yw;           // oy*S - PAD
reg [UW-1:0] pyw;          // oy*S + ky - PAD: image row
// RAM address of ring slot (row mod NR) * ROWW, kept as such: no multiply
reg [AW-1:0] fbase;        // of image row -PAD of this frame
reg [AW-1:0] ybase;        // of image row yw
reg [AW-1:0] pbase;        // of image row pyw
reg at_row_start;          // j, ky, ox all zero

// rows needed by the current output row and by the next one (nk: y0 + K of
// the next one); the "next" values follow nk a cycle later, which the row in
// between always covers (an output row of one beat has OFM_DIM = 1, so the
// next row is always row 0 and nk never changes)
reg [UW-1:0] nk;
reg [UW-1:0] need_cur;     // need + B of output row oy
reg [UW-1:0] keep_cur;     // keep + B of output row oy
reg [UW-1:0] need_nx;      // need + B of the next output row
reg [UW-1:0] need_nx_here; // the same in this frame's row count
reg [UW-1:0] keep_nx;
reg rows_ok;               // avail covered need_cur last cycle

reg s1_valid;
reg pad_q;
reg [W-1:0] rd_q;

wire en = !s1_valid || out_ready;
wire issue = en && (!at_row_start || rows_ok);

// each counter at its last value, kept as a flag beside it
reg j_last, ky_last, ox_last, oy_last;
wire j_pen = (j == WIN_PEN[JW-1:0]);
wire ky_pen = (ky == K_PEN[KW-1:0]);
wire ox_pen = (ox == OFM_PEN[OW-1:0]);
wire oy_pen = (oy == OFM_PEN[OW-1:0]);
wire row_end = j_last && ky_last && ox_last;
wire frame_last = row_end && oy_last;
wire next_row = issue && row_end;

// negative offsets wrap to the top of the UW range: unsigned >= catches both sides
wire pad = (cw >= U_ROWW) || (pyw >= U_IFM);

// a ring step: base + step mod DEPTH (step: whole rows, under DEPTH); the
// wrap test and both sums depend on the base alone, side by side
function [AW-1:0] ring_step;
    input [AW-1:0] base;
    input [AW-1:0] step;           // < DEPTH
    reg [AW:0] room;               // DEPTH - step: the base from which it wraps
    begin
        room = DEPTH_32[AW:0] - {1'b0, step};
        ring_step = ({1'b0, base} >= room) ? base - room[AW-1:0] : base + step;
    end
endfunction

wire [AW-1:0] pbase_row = ring_step(pbase, STEP_ROW_32[AW-1:0]);
wire [AW-1:0] ybase_s = ring_step(ybase, STEP_S_32[AW-1:0]);
wire [AW-1:0] fbase_ifm = ring_step(fbase, STEP_IFM_32[AW-1:0]);

// RAM address of the current beat (meaningful when not padding)
wire [AW-1:0] rd_addr = pbase + cw[AW-1:0];
wire unused_cw_hi = &{1'b0, cw[UW-1:AW]};

always @(posedge clk) begin
    if (!rst_n) begin
        j <= {JW{1'b0}};
        ky <= {KW{1'b0}};
        ox <= {OW{1'b0}};
        oy <= {OW{1'b0}};
        xw <= U_ZERO - U_PADSF;
        xw_n <= U_ZERO - U_PADSF + SSF_32[UW-1:0];
        cw <= U_ZERO - U_PADSF;
        yw <= U_ZERO - U_PAD;
        pyw <= U_ZERO - U_PAD;
        fbase <= BASE_F0_32[AW-1:0];
        ybase <= BASE_F0_32[AW-1:0];
        pbase <= BASE_F0_32[AW-1:0];
        at_row_start <= 1'b1;
        j_last <= ONE_J;
        ky_last <= ONE_K;
        ox_last <= ONE_O;
        oy_last <= ONE_O;
    end else if (issue) begin
        at_row_start <= row_end;
        j_last <= j_last ? ONE_J : j_pen;
        if (j_last) begin
            j <= {JW{1'b0}};
            ky_last <= ky_last ? ONE_K : ky_pen;
            if (ky_last) begin
                ky <= {KW{1'b0}};
                ox_last <= ox_last ? ONE_O : ox_pen;
                if (ox_last) begin
                    ox <= {OW{1'b0}};
                    oy_last <= oy_last ? ONE_O : oy_pen;
                    xw <= U_ZERO - U_PADSF;
                    xw_n <= U_ZERO - U_PADSF + SSF_32[UW-1:0];
                    cw <= U_ZERO - U_PADSF;
                    if (oy_last) begin
                        oy <= {OW{1'b0}};
                        yw <= U_ZERO - U_PAD;
                        pyw <= U_ZERO - U_PAD;
                        fbase <= fbase_ifm;
                        ybase <= fbase_ifm;
                        pbase <= fbase_ifm;
                    end else begin
                        oy <= oy + 1'b1;
                        yw <= yw + S_32[UW-1:0];
                        pyw <= yw + S_32[UW-1:0];
                        ybase <= ybase_s;
                        pbase <= ybase_s;
                    end
                end else begin
                    ox <= ox + 1'b1;
                    xw <= xw_n;
                    xw_n <= xw_n + SSF_32[UW-1:0];
                    cw <= xw_n;
                    pyw <= yw;
                    pbase <= ybase;
                end
            end else begin
                ky <= ky + 1'b1;
                pyw <= pyw + 1'b1;
                pbase <= pbase_row;
                cw <= xw;
            end
        end else begin
            j <= j + 1'b1;
            cw <= cw + 1'b1;
        end
    end
end

// ring bookkeeping: the writer completes rows, the reader releases them
// when it starts an output row
wire release_rows = issue && at_row_start;
// (fewer than NR rows: the low bits of the difference suffice)
wire [RW-1:0] free_n = keep_cur[RW-1:0] - rb[RW-1:0];
wire [UW-1:0] rb_rel = release_rows ? keep_cur : rb;
// the four outcomes from registers alone; the late row_done and issue only select
wire [RW-1:0] occ_rel = occ - free_n;
wire [RW-1:0] occ_rel_done = occ_rel + 1'b1;
wire [RW-1:0] occ_done = occ + 1'b1;
wire [RW-1:0] occ_kept = release_rows ? (row_done ? occ_rel_done : occ_rel) : occ;
wire [RW-1:0] occ_nx = (row_done && !release_rows) ? occ_done : occ_kept;

wire [UW-1:0] avail_done = avail + U_ONE;
wire [UW-1:0] avail_wrap = avail - U_IFM;
wire [UW-1:0] avail_wrap_done = avail + U_ONE_LESS_IFM;
wire frame_turn = issue && frame_last;
wire [UW-1:0] avail_nx = row_done ? (frame_turn ? avail_wrap_done : avail_done)
                                  : (frame_turn ? avail_wrap : avail);

always @(posedge clk) begin
    if (!rst_n) begin
        occ <= {RW{1'b0}};
        rb <= U_B;
        avail <= U_B;
    end else begin
        occ <= occ_nx;
        if (issue) begin
            // after a frame's last beat, indices count from the next frame
            rb <= frame_last ? rb_rel - U_IFM : rb_rel;
        end
        avail <= avail_nx;
    end
end

always @(posedge clk) begin
    if (!rst_n) begin
        nk <= U_NK_RESET;
        need_cur <= need_b(U_NK_FIRST);
        keep_cur <= keep_b(U_NK_FIRST);
        need_nx <= need_b(U_NK_RESET);
        need_nx_here <= (U_NK_RESET == U_NK_FIRST) ? need_b(U_NK_FIRST) + U_IFM : need_b(U_NK_RESET);
        keep_nx <= keep_b(U_NK_RESET);
        rows_ok <= 1'b0;
    end else begin
        need_nx <= need_b(nk);
        need_nx_here <= (nk == U_NK_FIRST) ? need_b(U_NK_FIRST) + U_IFM : need_b(nk);
        keep_nx <= keep_b(nk);
        if (next_row) begin
            nk <= (nk == U_NK_LAST) ? U_NK_FIRST : nk + S_32[UW-1:0];
            need_cur <= need_nx;
            keep_cur <= keep_nx;
            rows_ok <= (avail >= need_nx_here);
        end else begin
            rows_ok <= (avail >= need_cur);
        end
    end
end

// read stage: RAM output register = output register
always @(posedge clk) begin
    if (!rst_n) begin
        s1_valid <= 1'b0;
    end else if (en) begin
        s1_valid <= !at_row_start || rows_ok;
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
