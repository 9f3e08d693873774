// Block-sparse matrix-vector-threshold unit: one folded fully-connected layer
// whose weight matrix is stored as PE x SIMD blocks, only the blocks that
// matter, visited by a schedule ROM. Same stream interfaces and output modes
// as mvtu; see docs/hw_interfaces.md ("Block-sparse matrix-vector unit") for
// the weight semantics, the memory images and the cycle count.
//
// Weight semantics (WEIGHT_KIND):
//   "sparse01"   W[o,i] = WEIGHT_M + WEIGHT_Q * B[o,i], B in {0,1}: the
//                {alpha, beta} binary domain. A block is stored when it holds
//                a 1 of B. acc = Q*(B.x) + M*S with S = sum(x) computed once
//                per input vector while it is loaded, not per output.
//   "pm1_blocks" W[o,i] in {-1,+1} inside the stored blocks (bit 1 = +1),
//                0 outside: grouped / block-diagonal binary layers. Per block
//                the arithmetic is mvtu's (XNOR, AND or add/sub).
// Per input kind (MODE, numbered as in mvtu) the chunk of a stored block is
//   sparse01   bipolar : popcount(B & xbits); Q_EFF = 2Q and a per-row
//                        constant C[o] = -Q*popcount(B[o]) from a ROM
//                        (B.x = 2*popcount(B & xbits) - popcount(B[o]))
//              unipolar: popcount(B & x)
//              int     : sum_j B_j ? x_j : 0
//   pm1_blocks bipolar : 2*popcount(xnor) - SIMD (the per-row constant of
//                        the bipolar case, -SIMD per stored block of the row,
//                        is folded into every step, as in mvtu)
//              unipolar: 2*popcount(B & x) - popcount(x)
//              int     : sum_j B_j ? x_j : -x_j
// and acc[o] = Q_EFF * sum(chunks of row o) + M*S + C[o].
//
// Every sum is kept modulo 2^ACC_BITS. Two's-complement wrap-around is exact
// for the final value as long as that value fits ACC_BITS, which is the
// contract; intermediate terms (Q*B.x, M*S) may exceed it without harm.
//
// Schedule: the input vector of a frame is first loaded into one bank of a
// double buffer (SF beats, S accumulated on the way); the compute side then
// walks the STEPS entries of the schedule ROM, one per clock, while the
// loader fills the other bank with the next frame. An entry is
// {empty, last, sf}: a stored block of the current neuron fold at synapse
// fold sf (weights read in schedule order from a memory of NNZ words), or, for
// a fold without any stored block, one "empty" step that contributes 0 so the
// fold still emits its outputs from the shared terms. Steady state:
// max(SF, STEPS) cycles per frame.
//
// Pipeline of the compute side (one stall enable, en, as in mvtu):
//   issue : schedule entry register, weight address, bank select
//   S1    : registered weight-memory and buffer reads, M*S of the bank
//   S2    : per-PE chunk registered (zero on empty steps), threshold and
//           row-constant reads
//   out   : accumulate, and on the last step of a fold scale, add the shared
//           terms, compare (XOR OUT_FLIP)/emit into the output register
// out_valid rises 3 cycles after the issuing cycle of a fold's last step; a
// frame's first step issues the cycle after its last input beat is accepted.
// in_ready is a register (a free bank), independent of out_ready.
//
// PIPE_EVERY = k > 0 deepens both sides for the clock rate (same schedule,
// same cycles per frame):
//   loader: the input beat registered, then S's popcount (popcount_compressor)
//           or adder tree registered every k levels and the beat's term
//           registered before it is accumulated, free running beside the
//           loader; each frame's S goes into a small queue, read when that
//           frame's folds reach the scale stage (the queue, not the bank,
//           holds S, so the double buffer keeps its timing: max(SF, STEPS))
//   S1r   : the weight word and buffer word registered once more
//   ops   : MODE 2 registers its operands (+-x: an add of its own)
//   tree  : the chunk popcount (popcount_compressor) or adder tree registered
//           every k levels
//   S2    : chunks, as above
//   acc   : accumulate into the acc register only
//   scale : acc*Q_EFF and M*S registered, with the row constant
//   sum   : their sum registered, with the thresholds
//   out   : compare and emit into the output register
// LATENCY = 3 for k = 0; for k > 0, 7 + (MODE == 2) + TREE, TREE as in mvtu
// ((clog2(SIMD)-1)/k in MODE 2, 1 + (clog2(ceil(SIMD/6))-1)/k in modes 0/1, a
// term (L-1)/k counting 0 where L <= 1).
`resetall
`timescale 1ns / 1ps
`default_nettype none

module mvtu_sparse #(
    parameter MW = 8,
    parameter MH = 4,
    parameter PE = 2,
    parameter SIMD = 4,
    parameter MODE = 0,              // input kind: 0 bipolar, 1 unipolar, 2 int
    parameter INPUT_BITS = 1,        // 1 in modes 0/1, integer width in mode 2
    parameter INPUT_SIGNED = 0,      // mode 2 only
    parameter ACC_BITS = 8,
    parameter OUT_MODE = 0,          // 0 threshold, 1 accumulator, 2 multi-threshold
    parameter OUT_BITS = 1,          // OUT_MODE 2 only
    parameter [127:0] WEIGHT_KIND = "sparse01",  // or "pm1_blocks"
    parameter WEIGHT_M = 0,          // sparse01: W = WEIGHT_M + WEIGHT_Q*B
    parameter WEIGHT_Q = 1,          // sparse01: non-zero, any sign
    parameter NNZ = 1,               // stored blocks (0 allowed)
    parameter STEPS = 2,             // schedule entries per frame
    parameter WEIGHT_RAM = 0,        // weight memory: 0 the synthesis tool decides, 1 block RAM
    parameter PIPE_EVERY = 0,        // 0: shortest pipeline; k > 0: adder levels per clock (see above)
    parameter WEIGHT_FILE = "weights.mem",
    parameter SCHED_FILE = "schedule.mem",
    parameter THRESH_FILE = "thresholds.mem",
    parameter ROWC_FILE = "rowconst.mem",  // sparse01 with MODE 0 only
    // OUT_MODE 0/2: output o is inverted where OUT_FLIP[o] = 1 (1-bit: ~y; k-bit:
    // NT - level): a negative scale on a sparse01 row, whose flipped row would leave
    // the layer's {M, M+Q} form
    parameter [MH-1:0] OUT_FLIP = {MH{1'b0}}
) (
    input  wire                                       clk,
    input  wire                                       rst_n,

    input  wire [SIMD*INPUT_BITS-1:0]                 in_data,
    input  wire                                       in_valid,
    output wire                                       in_ready,

    output wire [PE*((OUT_MODE == 1) ? ACC_BITS :
                     (OUT_MODE == 2) ? OUT_BITS : 1)-1:0] out_data,
    output wire                                       out_valid,
    input  wire                                       out_ready
);

localparam IB = INPUT_BITS;
localparam A = ACC_BITS;
localparam OB = (OUT_MODE == 1) ? ACC_BITS : (OUT_MODE == 2) ? OUT_BITS : 1;
localparam NT = (OUT_MODE == 2) ? (1 << OUT_BITS) - 1 : 1;
localparam SF = MW / SIMD;
localparam NF = MH / PE;
localparam LOG_S = $clog2(SIMD);
localparam CW = IB + 2 + LOG_S;        // chunk width, as in mvtu
localparam SFW = (SF > 1) ? $clog2(SF) : 1;
localparam NFW = (NF > 1) ? $clog2(NF) : 1;
localparam SPW = (STEPS > 1) ? $clog2(STEPS) : 1;
localparam WD = (NNZ > 0) ? NNZ : 1;   // a zero matrix still gets one (unused) word
localparam WAW = (WD > 1) ? $clog2(WD) : 1;
localparam EW = SFW + 2;               // schedule entry {empty, last, sf}

localparam [127:0] KIND_S01 = "sparse01";
localparam [127:0] KIND_PM1 = "pm1_blocks";
localparam PM1 = (WEIGHT_KIND == KIND_PM1);
// The shared S term exists only where it is multiplied by something.
localparam USE_S = !PM1 && (WEIGHT_M != 0);
localparam USE_ROWC = !PM1 && (MODE == 0);
localparam Q_EFF = PM1 ? 1 : ((MODE == 0) ? 2 * WEIGHT_Q : WEIGHT_Q);
localparam USE_FLIP = (OUT_MODE != 1) && (OUT_FLIP != {MH{1'b0}});
localparam PIPED = (PIPE_EVERY > 0) ? 1 : 0;
// edges the chunk (and S) tree holds its data: adder_tree in MODE 2,
// popcount_compressor in modes 0/1 (registered counters, then a tree of
// ceil(SIMD/6) counts)
localparam LOG_G = $clog2((SIMD + 5) / 6);
localparam TREE_LAT = (PIPE_EVERY == 0) ? 0
                    : (MODE != 2) ? 1 + ((LOG_G > 1) ? (LOG_G - 1) / PIPE_EVERY : 0)
                    : (LOG_S > 1) ? (LOG_S - 1) / PIPE_EVERY : 0;
localparam OPS_REG = (PIPED != 0 && MODE == 2) ? 1 : 0;
localparam DLY = PIPED + OPS_REG + TREE_LAT;
// S queue: frames whose S is known and whose last fold has not reached the
// scale stage: at most the two banks plus one per compute stage up to it
localparam SQW = $clog2(DLY + 8);
localparam SQD = 1 << SQW;

// Elaboration-time parameter checks (unknown module name = readable error).
generate
    if (MW % SIMD != 0) begin : g_err_mw
        mvtu_sparse_error_MW_not_divisible_by_SIMD u_err();
    end
    if (MH % PE != 0) begin : g_err_mh
        mvtu_sparse_error_MH_not_divisible_by_PE u_err();
    end
    if (MODE < 0 || MODE > 2) begin : g_err_mode
        mvtu_sparse_error_MODE_must_be_0_1_or_2 u_err();
    end
    if (MODE != 2 && INPUT_BITS != 1) begin : g_err_ib
        mvtu_sparse_error_INPUT_BITS_must_be_1_in_MODE_0_and_1 u_err();
    end
    if (OUT_MODE < 0 || OUT_MODE > 2) begin : g_err_om
        mvtu_sparse_error_OUT_MODE_must_be_0_1_or_2 u_err();
    end
    if (OUT_MODE == 2 && (OUT_BITS < 1 || OUT_BITS > 8)) begin : g_err_ob
        mvtu_sparse_error_OUT_BITS_must_be_1_to_8_in_OUT_MODE_2 u_err();
    end
    if (ACC_BITS < 2 || ACC_BITS > 32) begin : g_err_acc
        mvtu_sparse_error_ACC_BITS_must_be_2_to_32 u_err();
    end
    if (WEIGHT_KIND != KIND_S01 && WEIGHT_KIND != KIND_PM1) begin : g_err_kind
        mvtu_sparse_error_WEIGHT_KIND_must_be_sparse01_or_pm1_blocks u_err();
    end
    if (!PM1 && WEIGHT_Q == 0) begin : g_err_q
        mvtu_sparse_error_WEIGHT_Q_must_be_nonzero u_err();
    end
    if (PM1 && (WEIGHT_M != 0 || WEIGHT_Q != 1)) begin : g_err_pm1
        mvtu_sparse_error_pm1_blocks_needs_WEIGHT_M_0_and_WEIGHT_Q_1 u_err();
    end
    if (NNZ < 0 || NNZ > NF*SF || STEPS < NF || STEPS > NF*SF || STEPS < NNZ) begin : g_err_steps
        mvtu_sparse_error_need_0_le_NNZ_le_STEPS_and_NF_le_STEPS_le_NF_times_SF u_err();
    end
    if (PIPE_EVERY < 0) begin : g_err_pipe
        mvtu_sparse_error_PIPE_EVERY_must_be_nonnegative u_err();
    end
    if (OUT_MODE == 1 && OUT_FLIP != {MH{1'b0}}) begin : g_err_flip
        mvtu_sparse_error_OUT_FLIP_needs_OUT_MODE_0_or_2 u_err();
    end
endgenerate

// 32-bit constants, sliced where used, keep the lint width checks quiet;
// the integer multipliers are reduced modulo 2^ACC_BITS (ACC_BITS <= 32).
localparam [31:0] SF_LAST = SF - 1;
localparam [31:0] NF_LAST = NF - 1;
localparam [31:0] WD_LAST = WD - 1;
localparam [31:0] SIMD_32 = SIMD;
localparam [31:0] Q_32 = Q_EFF;
localparam [31:0] M_32 = WEIGHT_M;
localparam [A-1:0] Q_A = Q_32[A-1:0];
localparam [A-1:0] M_A = M_32[A-1:0];

reg out_valid_reg;
reg [PE*OB-1:0] out_data_reg;

// Global stall of the compute side: only the output register can block.
wire en = !out_valid_reg || out_ready;

// ---------------------------------------------------------------- loader
// Two banks; full[b] says bank b holds a frame the compute side has not
// finished. The loader fills bank wb, the compute side reads bank rb.
reg [1:0] full;
reg wb, rb;
reg [SFW-1:0] ld_sf;
wire ld_last = (ld_sf == SF_LAST[SFW-1:0]);
wire ld = in_valid && !full[wb];

assign in_ready = !full[wb];

always @(posedge clk) begin
    if (!rst_n) begin
        ld_sf <= {SFW{1'b0}};
        wb <= 1'b0;
    end else if (ld) begin
        if (ld_last) begin
            ld_sf <= {SFW{1'b0}};
            wb <= !wb;
        end else begin
            ld_sf <= ld_sf + 1'b1;
        end
    end
end

// Buffer word address {sf, bank}: exactly 2*SF words for any SF. Reads are
// only of a full bank and writes only of a free one, so the two never meet.
localparam BAW = (SF > 1) ? SFW + 1 : 1;
reg [SIMD*IB-1:0] ibuf [0:2*SF-1];
wire [BAW-1:0] ba_wr, ba_rd;
always @(posedge clk) begin
    if (ld) begin
        ibuf[ba_wr] <= in_data;
    end
end

// ---------------------------------------------------------------- issue
reg [SPW-1:0] sp;      // index of the entry held in ent
reg [EW-1:0] ent;      // = srom[sp], prefetched
reg [NFW-1:0] nf;
reg [WAW-1:0] wa;      // next stored block, in schedule order
reg fold_first;        // ent is the first step of its fold

wire [SFW-1:0] e_sf = ent[SFW-1:0];
wire e_last = ent[SFW];
wire e_empty = ent[SFW+1];
wire nf_last = (nf == NF_LAST[NFW-1:0]);
wire frame_last = e_last && nf_last;
wire issue = en && full[rb];

generate
    if (SF > 1) begin : g_ba
        assign ba_wr = {ld_sf, wb};
        assign ba_rd = {e_sf, rb};
    end else begin : g_ba1
        assign ba_wr = wb;
        assign ba_rd = rb;
        wire unused_esf = &{1'b0, e_sf};
    end
endgenerate

reg [EW-1:0] srom [0:STEPS-1];
initial $readmemh(SCHED_FILE, srom);

wire [SPW-1:0] sp_rd = (!rst_n || frame_last) ? {SPW{1'b0}} : sp + 1'b1;

always @(posedge clk) begin
    if (!rst_n || issue) begin
        sp <= sp_rd;
        ent <= srom[sp_rd];
    end
end

always @(posedge clk) begin
    if (!rst_n) begin
        nf <= {NFW{1'b0}};
        wa <= {WAW{1'b0}};
        fold_first <= 1'b1;
        rb <= 1'b0;
    end else if (issue) begin
        fold_first <= e_last;
        if (e_last) begin
            nf <= nf_last ? {NFW{1'b0}} : nf + 1'b1;
        end
        // each frame reads all NNZ stored words once, in order, so wrapping
        // at the last word is also the frame boundary
        if (!e_empty) begin
            wa <= (wa == WD_LAST[WAW-1:0]) ? {WAW{1'b0}} : wa + 1'b1;
        end
        if (frame_last) begin
            rb <= !rb;
        end
    end
end

// The loader sets only a free bank and the compute side clears only a full
// one, so the two updates never target the same bit.
always @(posedge clk) begin
    if (!rst_n) begin
        full <= 2'b00;
    end else begin
        if (ld && ld_last) begin
            full[wb] <= 1'b1;
        end
        if (issue && frame_last) begin
            full[rb] <= 1'b0;
        end
    end
end

// ---------------------------------------------------------------- shared S
// S = sum(x) of the loaded frame. PIPE_EVERY = 0: one register per bank, M*S
// formed at issue time from a register, off the input path. PIPE_EVERY > 0:
// S computed by a pipeline beside the loader and queued per frame (sq_head is
// the oldest frame's S, sq_pop takes it).
wire [A-1:0] ms_issue;
wire [A-1:0] sq_head;
wire sq_pop;

genvar p, j, q, d;
generate
    if (USE_S) begin : g_s
        // the beat the S term is formed from: the input, or its registered copy
        wire [SIMD*IB-1:0] s_in;
        wire s_v, s_first, s_last;
        if (PIPED != 0) begin : g_sreg
            reg [SIMD*IB-1:0] sd_r;
            reg sv_r, sfirst_r, slast_r;
            always @(posedge clk) begin
                if (!rst_n) begin
                    sv_r <= 1'b0;
                end else begin
                    sv_r <= ld;
                end
            end
            always @(posedge clk) begin
                sd_r <= in_data;
                sfirst_r <= (ld_sf == {SFW{1'b0}});
                slast_r <= ld_last;
            end
            assign s_in = sd_r;
        end else begin : g_sdirect
            assign s_in = in_data;
        end
        wire [CW-1:0] s_beat;
        wire [A-1:0] s_beat_a;
        if (MODE == 2) begin : g_sint
            localparam TW = IB + 1 + LOG_S;
            wire [SIMD*(IB+1)-1:0] ops;
            wire [TW-1:0] tsum;
            for (j = 0; j < SIMD; j = j + 1) begin : g_op
                wire [IB-1:0] x = s_in[j*IB +: IB];
                assign ops[j*(IB+1) +: IB+1] = {(INPUT_SIGNED != 0) ? x[IB-1] : 1'b0, x};
            end
            adder_tree #(.N(SIMD), .IN_W(IB+1), .SIGNED(1), .PIPE_EVERY(PIPE_EVERY)) u_tree (
                .clk(clk), .en(1'b1), .in_data(ops), .out_data(tsum));
            assign s_beat = {tsum[TW-1], tsum};
        end else begin : g_sbin
            wire [LOG_S:0] pc;
            if (PIPED != 0) begin : g_cmp
                popcount_compressor #(.N(SIMD), .PIPE_EVERY(PIPE_EVERY)) u_pc (
                    .clk(clk), .en(1'b1), .in_data(s_in), .out_data(pc));
            end else begin : g_tree
                popcount #(.N(SIMD)) u_pc (.clk(clk), .en(1'b1), .in_data(s_in), .out_data(pc));
            end
            if (MODE == 0) begin : g_bip
                // each beat adds 2*popcount - SIMD; summed: 2*popcount(x) - MW
                assign s_beat = {1'b0, pc, 1'b0} - SIMD_32[CW-1:0];
            end else begin : g_uni
                assign s_beat = {2'b00, pc};
            end
        end
        sign_resize #(.IN_W(CW), .OUT_W(A)) u_rs (.in_data(s_beat), .out_data(s_beat_a));

        if (PIPED != 0) begin : g_spipe
            // {valid, first, last} of the beat beside the tree (TREE_LAT edges) and the
            // register of the beat's term (one more: the accumulate is an add of its own)
            for (d = 0; d <= TREE_LAT + 1; d = d + 1) begin : g_sdly
                wire [2:0] c;
                if (d == 0) begin : g_src
                    assign c = {g_sreg.sv_r, g_sreg.sfirst_r, g_sreg.slast_r};
                end else begin : g_reg
                    reg [2:0] r;
                    always @(posedge clk) begin
                        if (!rst_n) begin
                            r <= 3'b000;
                        end else begin
                            r <= g_sdly[d-1].c;
                        end
                    end
                    assign c = r;
                end
            end
            assign s_v = g_sdly[TREE_LAT + 1].c[2];
            assign s_first = g_sdly[TREE_LAT + 1].c[1];
            assign s_last = g_sdly[TREE_LAT + 1].c[0];
            reg [A-1:0] s_beat_r;
            always @(posedge clk) begin
                s_beat_r <= s_beat_a;
            end
            reg [A-1:0] s_acc;
            wire [A-1:0] s_nx = (s_first ? {A{1'b0}} : s_acc) + s_beat_r;
            always @(posedge clk) begin
                if (s_v) begin
                    s_acc <= s_nx;
                end
            end
            // the queue: written on a frame's last beat, read at the scale stage
            reg [A-1:0] sq [0:SQD-1];
            reg [SQW-1:0] sq_wp, sq_rp;
            wire sq_push = s_v && s_last;
            always @(posedge clk) begin
                if (sq_push) begin
                    sq[sq_wp] <= s_nx;
                end
            end
            always @(posedge clk) begin
                if (!rst_n) begin
                    sq_wp <= {SQW{1'b0}};
                    sq_rp <= {SQW{1'b0}};
                end else begin
                    if (sq_push) begin
                        sq_wp <= sq_wp + 1'b1;
                    end
                    if (sq_pop) begin
                        sq_rp <= sq_rp + 1'b1;
                    end
                end
            end
            assign sq_head = sq[sq_rp];
            assign ms_issue = {A{1'b0}};
        end else begin : g_sbank
            assign s_v = ld;
            assign s_first = (ld_sf == {SFW{1'b0}});
            assign s_last = ld_last;
            reg [A-1:0] s_acc, s_bank0, s_bank1;
            wire [A-1:0] s_nx = (s_first ? {A{1'b0}} : s_acc) + s_beat_a;
            always @(posedge clk) begin
                if (s_v) begin
                    s_acc <= s_nx;
                    if (s_last && !wb) s_bank0 <= s_nx;
                    if (s_last && wb) s_bank1 <= s_nx;
                end
            end
            assign ms_issue = (rb ? s_bank1 : s_bank0) * M_A;
            assign sq_head = {A{1'b0}};
            wire unused_pop = &{1'b0, sq_pop};
        end
    end else begin : g_nos
        assign ms_issue = {A{1'b0}};
        assign sq_head = {A{1'b0}};
        wire unused_pop = &{1'b0, sq_pop};
    end
endgenerate

// ---------------------------------------------------------------- S1
// Weight memory (NNZ stored blocks). As in mvtu, WEIGHT_RAM = 1 asks for block RAM:
// left alone, Yosys built a 256 x 256-bit block memory from about 4,500 LUTs.
wire [PE*SIMD-1:0] wword;
generate
    if (WEIGHT_RAM == 1) begin : g_wbram
        (* ram_style = "block", rom_style = "block" *)
        reg [PE*SIMD-1:0] wmem [0:WD-1];
        initial $readmemh(WEIGHT_FILE, wmem);
        assign wword = wmem[wa];
    end else begin : g_wauto
        reg [PE*SIMD-1:0] wmem [0:WD-1];
        initial $readmemh(WEIGHT_FILE, wmem);
        assign wword = wmem[wa];
    end
endgenerate

reg v1, first1, last1, empty1, flast1;
reg [NFW-1:0] nf1;
reg [PE*SIMD-1:0] w1;
reg [SIMD*IB-1:0] x1;
reg [A-1:0] ms1;

always @(posedge clk) begin
    if (!rst_n) begin
        v1 <= 1'b0;
    end else if (en) begin
        v1 <= issue;
    end
end

always @(posedge clk) begin
    if (en) begin
        w1 <= wword;
        x1 <= ibuf[ba_rd];
        first1 <= fold_first;
        last1 <= e_last;
        empty1 <= e_empty;
        flast1 <= frame_last;
        nf1 <= nf;
        ms1 <= ms_issue;
    end
end

// ---------------------------------------------------------------- S1r
// wt/xt: the operands of the chunk trees; ctl_t: v, first, last, empty,
// frame-last, nf of the data leaving the tree, delayed by DLY enabled edges.
localparam CTW = 5 + NFW;
wire [PE*SIMD-1:0] wt;
wire [SIMD*IB-1:0] xt;
wire [CTW-1:0] ctl_t;

generate
    if (PIPED != 0) begin : g_s1r
        reg [PE*SIMD-1:0] w1r;
        reg [SIMD*IB-1:0] x1r;
        always @(posedge clk) begin
            if (en) begin
                w1r <= w1;
                x1r <= x1;
            end
        end
        assign wt = w1r;
        assign xt = x1r;
    end else begin : g_s1
        assign wt = w1;
        assign xt = x1;
    end
endgenerate

pipe_delay #(
    .WIDTH(CTW-1),
    .DEPTH(DLY)
) u_ctl_dly (
    .clk(clk),
    .rst_n(rst_n),
    .en(en),
    .in_valid(v1),
    .in_data({first1, last1, empty1, flast1, nf1}),
    .out_valid(ctl_t[CTW-1]),
    .out_data(ctl_t[CTW-2:0])
);

// ---------------------------------------------------------------- S2
wire [PE*A-1:0] chunk1;

generate
    if (MODE == 2) begin : g_int
        localparam TW = IB + 1 + LOG_S;
        for (p = 0; p < PE; p = p + 1) begin : g_pe
            wire [SIMD*(IB+1)-1:0] ops;
            wire [TW-1:0] tsum;
            for (j = 0; j < SIMD; j = j + 1) begin : g_op
                wire [IB-1:0] x = xt[j*IB +: IB];
                wire [IB:0] e = {(INPUT_SIGNED != 0) ? x[IB-1] : 1'b0, x};
                // sparse01: a 0 of B selects nothing; pm1_blocks: it means -1
                assign ops[j*(IB+1) +: IB+1] = wt[p*SIMD + j] ? e : (PM1 ? -e : {(IB+1){1'b0}});
            end
            wire [SIMD*(IB+1)-1:0] leaves;
            if (OPS_REG != 0) begin : g_opsreg
                reg [SIMD*(IB+1)-1:0] ops_r;
                always @(posedge clk) begin
                    if (en) begin
                        ops_r <= ops;
                    end
                end
                assign leaves = ops_r;
            end else begin : g_opswire
                assign leaves = ops;
            end
            adder_tree #(.N(SIMD), .IN_W(IB+1), .SIGNED(1), .PIPE_EVERY(PIPE_EVERY)) u_tree (
                .clk(clk), .en(en), .in_data(leaves), .out_data(tsum));
            sign_resize #(.IN_W(TW), .OUT_W(A)) u_rs (.in_data(tsum), .out_data(chunk1[p*A +: A]));
        end
    end else begin : g_binary
        localparam PW = LOG_S + 1;
        if (PM1 && MODE == 1) begin : g_pcx
            // popcount(x) does not depend on the weights: one per step,
            // shared by all PEs
            wire [PW-1:0] pc_x;
            if (PIPED != 0) begin : g_cmp
                popcount_compressor #(.N(SIMD), .PIPE_EVERY(PIPE_EVERY)) u_pcx (
                    .clk(clk), .en(en), .in_data(xt), .out_data(pc_x));
            end else begin : g_tree
                popcount #(.N(SIMD)) u_pcx (.clk(clk), .en(en), .in_data(xt), .out_data(pc_x));
            end
        end
        for (p = 0; p < PE; p = p + 1) begin : g_pe
            wire [SIMD-1:0] w = wt[p*SIMD +: SIMD];
            wire [SIMD-1:0] m = (PM1 && MODE == 0) ? ~(xt ^ w) : (xt & w);
            wire [PW-1:0] pc;
            wire [CW-1:0] c;
            if (PIPED != 0) begin : g_cmp
                popcount_compressor #(.N(SIMD), .PIPE_EVERY(PIPE_EVERY)) u_pc (
                    .clk(clk), .en(en), .in_data(m), .out_data(pc));
            end else begin : g_tree
                popcount #(.N(SIMD)) u_pc (.clk(clk), .en(en), .in_data(m), .out_data(pc));
            end
            if (!PM1) begin : g_s01
                assign c = {{(CW-PW){1'b0}}, pc};
            end else if (MODE == 0) begin : g_xnor
                assign c = {1'b0, pc, 1'b0} - SIMD_32[CW-1:0];
            end else begin : g_and
                assign c = {1'b0, pc, 1'b0} - {2'b00, g_pcx.pc_x};
            end
            sign_resize #(.IN_W(CW), .OUT_W(A)) u_rs (.in_data(c), .out_data(chunk1[p*A +: A]));
        end
    end
endgenerate

reg v2, first2, last2, flast2;
reg [NFW-1:0] nf2;
reg [PE*A-1:0] chunk2;
reg [A-1:0] ms2;

always @(posedge clk) begin
    if (!rst_n) begin
        v2 <= 1'b0;
    end else if (en) begin
        v2 <= ctl_t[CTW-1];
    end
end

always @(posedge clk) begin
    if (en) begin
        // an empty step (fold without stored blocks) adds nothing
        chunk2 <= ctl_t[NFW+1] ? {PE*A{1'b0}} : chunk1;
        first2 <= ctl_t[NFW+3];
        last2 <= ctl_t[NFW+2];
        flast2 <= ctl_t[NFW];
        nf2 <= ctl_t[NFW-1:0];
        ms2 <= ms1;
    end
end

// ---------------------------------------------------------------- out
// Per fold: the threshold and row-constant words and the OUT_FLIP bits,
// registered beside the value they meet: PIPE_EVERY = 0 the final sum formed
// from acc_nx in the cycle after S2; PIPE_EVERY > 0 the registered sum. The
// memories are declared at module level because Yosys does not resolve
// hierarchical names into a generate block declared later.
// thr_addr/rowc_addr: the fold whose words are read (registered, with en)
// into thr_q/rowc_q/flip_q.
wire [NFW-1:0] thr_addr, rowc_addr;
wire [PE*NT*A-1:0] thr_q;
wire [PE*A-1:0] rowc_q;
wire [PE-1:0] flip_q;
genvar fi;
generate
    if (OUT_MODE != 1) begin : g_tmem
        reg [PE*NT*A-1:0] tmem [0:NF-1];
        reg [PE*NT*A-1:0] thr_r;
        initial $readmemh(THRESH_FILE, tmem);
        always @(posedge clk) begin
            if (en) begin
                thr_r <= tmem[thr_addr];
            end
        end
        assign thr_q = thr_r;
    end else begin : g_notmem
        assign thr_q = {PE*NT*A{1'b0}};
    end
    if (USE_ROWC) begin : g_cmem
        reg [PE*A-1:0] cmem [0:NF-1];
        reg [PE*A-1:0] rowc_r;
        initial $readmemh(ROWC_FILE, cmem);
        always @(posedge clk) begin
            if (en) begin
                rowc_r <= cmem[rowc_addr];
            end
        end
        assign rowc_q = rowc_r;
    end else begin : g_nocmem
        assign rowc_q = {PE*A{1'b0}};
    end
    if (USE_FLIP) begin : g_flip
        wire [PE-1:0] flip_rom [0:NF-1];
        for (fi = 0; fi < NF; fi = fi + 1) begin : g_fold
            assign flip_rom[fi] = OUT_FLIP[fi*PE +: PE];
        end
        reg [PE-1:0] flip_r;
        always @(posedge clk) begin
            if (en) begin
                flip_r <= flip_rom[thr_addr];
            end
        end
        assign flip_q = flip_r;
    end else begin : g_noflip
        assign flip_q = {PE{1'b0}};
    end
    if (OUT_MODE == 1 && !USE_ROWC) begin : g_unused_addr
        wire unused_addr = &{1'b0, thr_addr, rowc_addr};
    end else if (OUT_MODE == 1) begin : g_unused_taddr
        wire unused_addr = &{1'b0, thr_addr};
    end else if (!USE_ROWC) begin : g_unused_raddr
        wire unused_addr = &{1'b0, rowc_addr};
    end
endgenerate

wire [PE*A-1:0] acc_nx_all;     // acc of every PE after adding chunk2
wire [PE*A-1:0] acc_all;        // acc registers
wire [PE*A-1:0] fin;            // the exact dot products compared/emitted
wire [PE*NT*A-1:0] thr_f;       // their thresholds
wire [PE-1:0] flip_f;           // and OUT_FLIP bits
wire emit;

generate
    for (p = 0; p < PE; p = p + 1) begin : g_acc
        reg [A-1:0] acc;
        assign acc_nx_all[p*A +: A] = (first2 ? {A{1'b0}} : acc) + chunk2[p*A +: A];
        always @(posedge clk) begin
            if (en && v2) begin
                acc <= acc_nx_all[p*A +: A];
            end
        end
        assign acc_all[p*A +: A] = acc;
    end
    if (PIPED == 0) begin : g_short
        // the cycle after S2: scale, add the shared terms and compare at once
        assign thr_addr = ctl_t[NFW-1:0];
        assign rowc_addr = ctl_t[NFW-1:0];
        for (p = 0; p < PE; p = p + 1) begin : g_fin
            // the exact dot product, modulo 2^ACC_BITS (= exact, it fits)
            assign fin[p*A +: A] = acc_nx_all[p*A +: A] * Q_A + ms2 + rowc_q[p*A +: A];
        end
        assign thr_f = thr_q;
        assign flip_f = flip_q;
        assign emit = v2 && last2;
        assign sq_pop = 1'b0;
        wire unused_short = &{1'b0, acc_all, flast2, nf2, sq_head};
    end else begin : g_deep
        // acc stage: the acc registers above, their fold's control beside them
        reg vA, lastA, flastA;
        reg [NFW-1:0] nfA;
        always @(posedge clk) begin
            if (!rst_n) begin
                vA <= 1'b0;
            end else if (en) begin
                vA <= v2;
            end
        end
        always @(posedge clk) begin
            if (en) begin
                lastA <= last2;
                flastA <= flast2;
                nfA <= nf2;
            end
        end
        // scale stage: acc*Q, M*S of the frame (its queue entry), the row constant
        reg vS, lastS;
        reg [NFW-1:0] nfS;
        reg [PE*A-1:0] accq_r;
        reg [A-1:0] ms_r;
        always @(posedge clk) begin
            if (!rst_n) begin
                vS <= 1'b0;
            end else if (en) begin
                vS <= vA;
            end
        end
        always @(posedge clk) begin
            if (en) begin
                lastS <= lastA;
                nfS <= nfA;
                ms_r <= sq_head * M_A;
            end
        end
        for (p = 0; p < PE; p = p + 1) begin : g_scale
            always @(posedge clk) begin
                if (en) begin
                    accq_r[p*A +: A] <= acc_all[p*A +: A] * Q_A;
                end
            end
        end
        assign rowc_addr = nfA;   // rowc_q beside accq_r
        assign thr_addr = nfS;    // thr_q, flip_q beside fin_r
        // the frame's last fold leaves the queue entry behind it
        assign sq_pop = en && vA && lastA && flastA && USE_S;
        // sum stage: the final values, with the thresholds and flips of their fold
        reg vF, lastF;
        reg [PE*A-1:0] fin_r;
        always @(posedge clk) begin
            if (!rst_n) begin
                vF <= 1'b0;
            end else if (en) begin
                vF <= vS;
            end
        end
        always @(posedge clk) begin
            if (en) begin
                lastF <= lastS;
            end
        end
        for (p = 0; p < PE; p = p + 1) begin : g_sum
            always @(posedge clk) begin
                if (en) begin
                    fin_r[p*A +: A] <= accq_r[p*A +: A] + ms_r + rowc_q[p*A +: A];
                end
            end
        end
        assign fin = fin_r;
        assign thr_f = thr_q;
        assign flip_f = flip_q;
        assign emit = vF && lastF;
        wire unused_deep = &{1'b0, ms2};   // M*S comes from the queue here
    end
endgenerate

wire [PE*OB-1:0] res2;

generate
    for (p = 0; p < PE; p = p + 1) begin : g_res
        wire [A-1:0] f = fin[p*A +: A];
        if (OUT_MODE == 0) begin : g_thr
            assign res2[p] = ($signed(f) >= $signed(thr_f[p*A +: A])) ^ flip_f[p];
        end else if (OUT_MODE == 2) begin : g_mt
            // number of thresholds met (see mvtu.v)
            localparam CNT_W = $clog2(NT) + 1;
            wire [NT-1:0] ge;
            wire [CNT_W-1:0] cnt;
            for (q = 0; q < NT; q = q + 1) begin : g_cmp
                assign ge[q] = ($signed(f) >= $signed(thr_f[(p*NT + q)*A +: A]));
            end
            popcount #(.N(NT)) u_cnt (.clk(clk), .en(en), .in_data(ge), .out_data(cnt));
            assign res2[p*OB +: OB] = cnt[OB-1:0] ^ {OB{flip_f[p]}};  // flipped: NT - count
            if (CNT_W > OB) begin : g_unused
                wire unused_cnt = &{1'b0, cnt[CNT_W-1:OB]};
            end
        end else begin : g_raw
            assign res2[p*OB +: OB] = f;
            wire unused_thr = &{1'b0, thr_f[p*NT*A +: NT*A], flip_f[p]};
        end
    end
endgenerate

always @(posedge clk) begin
    if (!rst_n) begin
        out_valid_reg <= 1'b0;
    end else if (en) begin
        out_valid_reg <= emit;
    end
end

always @(posedge clk) begin
    if (en && emit) begin
        out_data_reg <= res2;
    end
end

assign out_data = out_data_reg;
assign out_valid = out_valid_reg;

endmodule

`resetall
