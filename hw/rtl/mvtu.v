// Matrix-vector-threshold unit: one folded fully-connected BNN layer.
//
// Computes acc[o] = sum_i W[o,i] * x[i] (W in {-1,+1}) for MH outputs over an
// MW-element input, PE outputs and SIMD inputs at a time, and emits either
// (acc >= T) bits, the raw accumulators, or (OUT_MODE 2) an OUT_BITS-wide
// multi-threshold count per output (k-bit activations for the next layer).
// See docs/hw_interfaces.md for the encodings, the stream bit order and the
// memory image layout.
//
// Schedule: the NF*SF (neuron fold, synapse fold) steps of a frame are issued
// one per clock in the order nf-major, sf-minor. During the nf == 0 pass the
// input beats are consumed from in_data and written to an SF-deep buffer; the
// passes nf > 0 replay that buffer, so each input beat is taken exactly once.
// The nf == 0 pass of the next frame starts right after the last step of the
// previous frame, which gives exactly NF*SF cycles per frame in steady state.
//
// Pipeline with PIPE_EVERY = 0 (all stages share one stall enable, en):
//   issue : counters sf/nf, weight address; input handshake when nf == 0
//   S1    : registered weight-memory read, registered input (or buffer) word
//   S2    : per-PE chunk sum (XNOR/AND popcount or add/sub tree) registered,
//           registered threshold-memory read for the same nf
//   out   : accumulate, and on the last sf compare/emit into the output register
// The output register is the only place that can hold a result the consumer
// has not taken, so stalling everything while it is full loses nothing.
// out_valid rises two clock edges after the edge that accepted the last step
// of a fold (three-cycle latency counting the issuing cycle).
//
// PIPE_EVERY = k > 0 deepens the pipeline for the clock rate (same schedule,
// same cycles per frame, LATENCY more edges to out_valid):
//   S1m   : with WEIGHT_RAM = 1, the block-RAM word and the input word
//           registered next to the RAM (Yosys maps ECP5 block RAM without its
//           own output register, and a word spread over many RAMs needs the
//           routing of a whole cycle)
//   S1r   : the memory word and input word registered once more, so the XNOR
//           does not start at a RAM read; a weight ROM left to logic and
//           deeper than 256 words is read as 256-word banks in S1 and the
//           bank chosen in S1r, so its address multiplexer is split across
//           the two registers; MODE 2 registers its +-(x - offset) operands
//           in one more stage
//   tree  : the chunk-sum tree registered after every k adder levels; in
//           modes 0/1 the popcount is popcount_compressor: its 6:3 counters
//           registered, then every k levels of the tree of their counts
//   S2    : chunk sums, as above; the threshold word read for the same nf
//   acc   : accumulate into the acc register only; the threshold word
//           registered once more (a threshold block RAM does not reach the
//           compare in the cycle of its read)
//   out   : compare the registered accumulator with its registered threshold
//           and write the result into a QD-deep output queue (credit_queue)
// and nothing inside stalls: the last step of a fold (the one that emits)
// issues only while fewer than QD results are in flight or queued, a credit
// counted in registers. A unit as wide as a CNV layer (thousands of
// registers) would otherwise need out_ready, through one enable net, at
// every register within a clock; now in_ready comes from registers only.
// QD covers the round trip from issue to the queue's read, so a consumer
// that is always ready never throttles the input.
// LATENCY = 1 + (WEIGHT_RAM == 1) + (MODE == 2) + TREE + 1 edges for k > 0,
// 0 for k = 0, where TREE = (clog2(SIMD)-1)/k in MODE 2 and
// 1 + (clog2(G)-1)/k in modes 0/1 (G = ceil(SIMD/6); a term (L-1)/k counts as
// 0 where L <= 1).
`resetall
`timescale 1ns / 1ps
`default_nettype none

module mvtu #(
    parameter MW = 8,
    parameter MH = 4,
    parameter PE = 2,
    parameter SIMD = 4,
    parameter MODE = 0,          // 0 XNOR, 1 AND, 2 ADDSUB
    parameter INPUT_BITS = 1,    // 1 in modes 0/1, integer width in mode 2
    parameter INPUT_SIGNED = 0,  // mode 2 only
    parameter INPUT_OFFSET = 0,  // mode 2, unsigned inputs: each input stands for x - INPUT_OFFSET
                                 // (levels of a signed k-bit activation, 0 <= offset <= 2^(INPUT_BITS-1))
    parameter ACC_BITS = 8,
    parameter OUT_MODE = 0,      // 0 threshold (1 bit/output), 1 raw accumulator,
                                 // 2 multi-threshold (OUT_BITS bits/output)
    parameter OUT_BITS = 1,      // OUT_MODE 2 only: k, with 2^k-1 thresholds/output
    parameter WEIGHT_RAM = 0,    // weight memory: 0 the synthesis tool decides (logic with
                                 // PIPE_EVERY > 0), 1 block RAM
    parameter WEIGHT_FOLD = 1,   // WEIGHT_RAM 1 with PIPE_EVERY > 0: words per memory row (see S1)
    parameter PIPE_EVERY = 0,    // 0: shortest pipeline; k > 0: adder levels per clock (see above)
    parameter WEIGHT_FILE = "weights.mem",
    parameter THRESH_FILE = "thresholds.mem"
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
localparam OB = (OUT_MODE == 1) ? ACC_BITS : (OUT_MODE == 2) ? OUT_BITS : 1;
// Thresholds per output: one for OUT_MODE 0, 2^k-1 for the k-bit
// multi-threshold (FINN MultiThreshold) output. Each costs one AW-bit
// comparator per PE, so k <= 4 (15 comparators) is the intended range.
localparam NT = (OUT_MODE == 2) ? (1 << OUT_BITS) - 1 : 1;
localparam SF = MW / SIMD;
localparam NF = MH / PE;
localparam LOG_S = $clog2(SIMD);
// A chunk is bounded by SIMD*2^IB in magnitude in every mode; two spare bits
// cover the sign and the 2*popcount form of modes 0/1.
localparam CW = IB + 2 + LOG_S;
// Accumulate at least as wide as a chunk, so that a configuration whose
// ACC_BITS is exactly the layer range (e.g. SF == 1) still adds exactly.
localparam AW = (ACC_BITS > CW) ? ACC_BITS : CW;
localparam SFW = (SF > 1) ? $clog2(SF) : 1;
localparam NFW = (NF > 1) ? $clog2(NF) : 1;
localparam WAW = (NF*SF > 1) ? $clog2(NF*SF) : 1;
localparam PIPED = (PIPE_EVERY > 0) ? 1 : 0;
// edges the chunk-sum tree holds its data: adder_tree in MODE 2; in modes 0/1
// with PIPE_EVERY > 0 popcount_compressor (registered 6:3 counters, then an
// adder tree of ceil(SIMD/6) leaves)
localparam LOG_G = $clog2((SIMD + 5) / 6);
localparam TREE_LAT = (PIPE_EVERY == 0) ? 0
                    : (MODE != 2) ? 1 + ((LOG_G > 1) ? (LOG_G - 1) / PIPE_EVERY : 0)
                    : (LOG_S > 1) ? (LOG_S - 1) / PIPE_EVERY : 0;
localparam OPS_REG = (PIPE_EVERY > 0 && MODE == 2) ? 1 : 0;
localparam MEM_REG = (PIPE_EVERY > 0 && WEIGHT_RAM == 1) ? 1 : 0;
localparam DLY = PIPED + MEM_REG + OPS_REG + TREE_LAT;
// Output queue depth with PIPE_EVERY > 0: a result is written DLY + 3 edges
// after its step issued (S1, the DLY stages, S2, acc), offered one edge later,
// and its credit returns on the edge it is taken: DLY + 5 results can be on
// the way at one per clock, one more keeps the credit register ahead.
localparam QD = DLY + 6;

// Elaboration-time parameter checks: an unknown module name is the clearest
// error Verilog-2005 can produce.
generate
    if (MW % SIMD != 0) begin : g_err_mw
        mvtu_error_MW_not_divisible_by_SIMD u_err();
    end
    if (MH % PE != 0) begin : g_err_mh
        mvtu_error_MH_not_divisible_by_PE u_err();
    end
    if (MODE < 0 || MODE > 2) begin : g_err_mode
        mvtu_error_MODE_must_be_0_1_or_2 u_err();
    end
    if (MODE != 2 && INPUT_BITS != 1) begin : g_err_ib
        mvtu_error_INPUT_BITS_must_be_1_in_MODE_0_and_1 u_err();
    end
    if (OUT_MODE < 0 || OUT_MODE > 2) begin : g_err_om
        mvtu_error_OUT_MODE_must_be_0_1_or_2 u_err();
    end
    if (OUT_MODE == 2 && (OUT_BITS < 1 || OUT_BITS > 8)) begin : g_err_ob
        mvtu_error_OUT_BITS_must_be_1_to_8_in_OUT_MODE_2 u_err();
    end
    if (INPUT_OFFSET != 0 && (MODE != 2 || INPUT_SIGNED != 0 || INPUT_OFFSET < 0
                              || INPUT_OFFSET > (1 << (INPUT_BITS - 1)))) begin : g_err_off
        mvtu_error_INPUT_OFFSET_needs_MODE_2_unsigned_and_at_most_half_range u_err();
    end
    if (ACC_BITS < 2) begin : g_err_acc
        mvtu_error_ACC_BITS_must_be_at_least_2 u_err();
    end
    if (PIPE_EVERY < 0) begin : g_err_pipe
        mvtu_error_PIPE_EVERY_must_be_nonnegative u_err();
    end
    if (WEIGHT_FOLD < 1 || WEIGHT_FOLD > MH / PE * (MW / SIMD)
        || (WEIGHT_FOLD > 1 && (PIPE_EVERY == 0 || WEIGHT_RAM != 1))) begin : g_err_fold
        mvtu_error_WEIGHT_FOLD_needs_WEIGHT_RAM_1_and_PIPE_EVERY_and_at_most_NF_times_SF u_err();
    end
endgenerate

// 32-bit constants, sliced where compared, keep the lint width checks quiet
localparam [31:0] SF_LAST = SF - 1;
localparam [31:0] NF_LAST = NF - 1;
localparam [31:0] SIMD_32 = SIMD;
localparam [31:0] OFFSET_32 = INPUT_OFFSET;
localparam [IB:0] OFFSET_E = OFFSET_32[IB:0];

// en: the stall enable of every pipeline register (constant 1 with
// PIPE_EVERY > 0); room: a step that emits (sf_last) may issue
wire en;
wire room;

// ---------------------------------------------------------------- issue
reg [SFW-1:0] sf;
reg [NFW-1:0] nf;
reg [WAW-1:0] waddr;    // nf*SF + sf, kept as a counter to avoid a multiplier

wire nf_first = (nf == {NFW{1'b0}});
wire sf_last = (sf == SF_LAST[SFW-1:0]);
wire nf_last = (nf == NF_LAST[NFW-1:0]);
wire issue = en && (!nf_first || in_valid) && (!sf_last || room);
wire wrap = sf_last && nf_last;    // the last step of a frame

assign in_ready = en && nf_first && (!sf_last || room);

always @(posedge clk) begin
    if (!rst_n) begin
        sf <= {SFW{1'b0}};
        nf <= {NFW{1'b0}};
        waddr <= {WAW{1'b0}};
    end else if (issue) begin
        if (sf_last) begin
            sf <= {SFW{1'b0}};
            nf <= nf_last ? {NFW{1'b0}} : nf + 1'b1;
        end else begin
            sf <= sf + 1'b1;
        end
        waddr <= wrap ? {WAW{1'b0}} : waddr + 1'b1;
    end
end

// ---------------------------------------------------------------- S1
// Weight memory. Left alone, Yosys maps a shallow, very wide ROM (a conv layer
// with PE*SIMD = 512 and 144 words, say) into thousands of LUTs; WEIGHT_RAM = 1
// asks for block RAM instead (the compiler sets it where its resource model
// prefers BRAM). Both read through the same registered port.
// With PIPE_EVERY > 0 the memory is laid out for the clock:
//   in logic (WEIGHT_RAM = 0): one ROM per PE, each read through its own copy
//     of the word address, so no address bit has to reach every PE's ROM in a
//     clock (a CNV layer's 1024-bit ROM is thousands of LUTs); a ROM deeper
//     than 256 words is read as NWB banks of 256 words (one LUT6/MUXF7/MUXF8
//     level each), all registered in S1, and S1r picks the bank;
//   in block RAM (WEIGHT_RAM = 1): WEIGHT_FOLD runs of WROWS = ceil(NF*SF / F)
//     consecutive words side by side (word b*WROWS + r is field b of row r), so
//     the memory is WROWS deep and no RAM sits behind a depth multiplexer; the
//     row is registered next to the RAMs (S1m) and S1r picks the field.
localparam WB_AW = 8;
localparam WBANKED = (PIPE_EVERY > 0 && WEIGHT_RAM == 0 && NF*SF > (1 << WB_AW)) ? 1 : 0;
localparam WFOLD = (PIPE_EVERY > 0 && WEIGHT_RAM == 1) ? WEIGHT_FOLD : 1;
localparam WROWS = (NF*SF + WFOLD - 1) / WFOLD;
localparam RAW = (WROWS > 1) ? $clog2(WROWS) : 1;
localparam [31:0] WROW_LAST = WROWS - 1;
localparam NWB = (WBANKED != 0) ? (NF*SF + (1 << WB_AW) - 1) / (1 << WB_AW) : WFOLD;
localparam WBW = (NWB > 1) ? $clog2(NWB) : 1;
wire [NWB*PE*SIMD-1:0] wword;
wire [WBW-1:0] wbank;    // bank (field) of the word addressed by this issue
genvar wb, wp;
generate
    if (WEIGHT_RAM == 1 && WFOLD > 1) begin : g_wfold
        (* ram_style = "block", rom_style = "block" *)
        reg [NWB*PE*SIMD-1:0] wmem [0:WROWS-1];
        initial $readmemh(WEIGHT_FILE, wmem);
        reg [RAW-1:0] wrow;
        reg [WBW-1:0] wcol;
        always @(posedge clk) begin
            if (!rst_n) begin
                wrow <= {RAW{1'b0}};
                wcol <= {WBW{1'b0}};
            end else if (issue) begin
                if (wrap) begin
                    wrow <= {RAW{1'b0}};
                    wcol <= {WBW{1'b0}};
                end else if (wrow == WROW_LAST[RAW-1:0]) begin
                    wrow <= {RAW{1'b0}};
                    wcol <= wcol + 1'b1;
                end else begin
                    wrow <= wrow + 1'b1;
                end
            end
        end
        assign wword = wmem[wrow];
        assign wbank = wcol;
        wire unused_waddr = &{1'b0, waddr};
    end else if (WEIGHT_RAM == 1) begin : g_wbram
        (* ram_style = "block", rom_style = "block" *)
        reg [PE*SIMD-1:0] wmem [0:NF*SF-1];
        initial $readmemh(WEIGHT_FILE, wmem);
        assign wword = wmem[waddr];
        assign wbank = {WBW{1'b0}};
    end else if (PIPE_EVERY > 0) begin : g_wlogic
        // logic by construction: each PE's ROM keeps only its own SIMD bits
        for (wp = 0; wp < PE; wp = wp + 1) begin : g_pe
            (* ram_style = "logic", rom_style = "logic" *)
            reg [PE*SIMD-1:0] wmem [0:NF*SF-1];
            initial $readmemh(WEIGHT_FILE, wmem);
            // a copy of waddr that synthesis must not merge with the others
            (* keep = "true" *) reg [WAW-1:0] paddr;
            always @(posedge clk) begin
                if (!rst_n) begin
                    paddr <= {WAW{1'b0}};
                end else if (issue) begin
                    paddr <= wrap ? {WAW{1'b0}} : paddr + 1'b1;
                end
            end
            for (wb = 0; wb < NWB; wb = wb + 1) begin : g_bank
                localparam [31:0] BANK = wb;
                // the last bank's words past NF*SF are never selected
                wire [WAW-1:0] baddr;
                if (WBANKED != 0) begin : g_hi
                    assign baddr = {BANK[WAW-WB_AW-1:0], paddr[WB_AW-1:0]};
                end else begin : g_all
                    assign baddr = paddr;
                end
                wire [PE*SIMD-1:0] word = wmem[baddr];
                assign wword[(wb*PE + wp)*SIMD +: SIMD] = word[wp*SIMD +: SIMD];
                if (PE > 1) begin : g_unused
                    wire unused_other_pes = &{1'b0, word};
                end
            end
        end
        if (WBANKED != 0) begin : g_wb
            assign wbank = waddr[WAW-1 -: WBW];
        end else begin : g_nowb
            assign wbank = {WBW{1'b0}};
            wire unused_waddr = &{1'b0, waddr};
        end
    end else begin : g_wauto
        reg [PE*SIMD-1:0] wmem [0:NF*SF-1];
        initial $readmemh(WEIGHT_FILE, wmem);
        assign wword = wmem[waddr];
        assign wbank = {WBW{1'b0}};
    end
endgenerate

reg v1, first1, last1;
reg [NFW-1:0] nf1;
reg [NWB*PE*SIMD-1:0] w1;
reg [WBW-1:0] wbank1;
reg [SIMD*IB-1:0] in1;
wire [SIMD*IB-1:0] act1;     // the input word of this step: in1 on the nf == 0 pass, else buf1
wire [SIMD*IB-1:0] buf1_q;   // the input buffer's registered read
wire sel_in1_q;

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
        wbank1 <= wbank;
        in1 <= in_data;
        first1 <= (sf == {SFW{1'b0}});
        last1 <= sf_last;
        nf1 <= nf;
    end
end

generate
    if (NF > 1) begin : g_ibuf
        // Input reuse buffer: written on the nf == 0 pass, replayed after.
        // Read and write addresses coincide only on that first pass, where
        // the registered read value is not used, so no bypass is needed.
        reg [SIMD*IB-1:0] ibuf [0:SF-1];
        reg [SIMD*IB-1:0] buf1;
        reg sel_in1;
        always @(posedge clk) begin
            if (issue && nf_first) begin
                ibuf[sf] <= in_data;
            end
            if (en) begin
                buf1 <= ibuf[sf];
                sel_in1 <= nf_first;
            end
        end
        assign act1 = sel_in1 ? in1 : buf1;
        assign buf1_q = buf1;
        assign sel_in1_q = sel_in1;
    end else begin : g_nobuf
        assign act1 = in1;
        assign buf1_q = in1;
        assign sel_in1_q = 1'b1;
    end
endgenerate

// ---------------------------------------------------------------- S1m, S1r
// wt/act: the operands of the chunk-sum tree; ctl_t: v, first, last, nf of the
// data leaving the tree, delayed by DLY enabled edges beside it.
wire [PE*SIMD-1:0] wt;
wire [SIMD*IB-1:0] act;
wire [3+NFW-1:0] ctl_t;

genvar p, j, q;
generate
    if (PIPED != 0) begin : g_s1r
        // with MEM_REG the memory row (every bank) and both input words (the
        // buffer may be block RAM too) registered next to the RAMs, the bank
        // and the input picked after those registers
        wire [NWB*PE*SIMD-1:0] w1m_q;
        wire [WBW-1:0] wbankm_q;
        wire [SIMD*IB-1:0] act1m_q;
        if (MEM_REG != 0) begin : g_s1m
            reg [NWB*PE*SIMD-1:0] w1m;
            reg [WBW-1:0] wbankm;
            reg [SIMD*IB-1:0] in1m, buf1m;
            reg sel_in1m;
            always @(posedge clk) begin
                if (en) begin
                    w1m <= w1;
                    wbankm <= wbank1;
                    in1m <= in1;
                    buf1m <= buf1_q;
                    sel_in1m <= sel_in1_q;
                end
            end
            assign w1m_q = w1m;
            assign wbankm_q = wbankm;
            assign act1m_q = sel_in1m ? in1m : buf1m;
            wire unused_act1 = &{1'b0, act1};
        end else begin : g_nos1m
            assign w1m_q = w1;
            assign wbankm_q = wbank1;
            assign act1m_q = act1;
            wire unused_buf1 = &{1'b0, buf1_q, sel_in1_q};
        end
        reg [PE*SIMD-1:0] w1r;
        reg [SIMD*IB-1:0] act1r;
        always @(posedge clk) begin
            if (en) begin
                w1r <= w1m_q[wbankm_q*PE*SIMD +: PE*SIMD];
                act1r <= act1m_q;
            end
        end
        assign wt = w1r;
        assign act = act1r;
    end else begin : g_s1
        // one bank, one field: nothing to select
        assign wt = w1[PE*SIMD-1:0];
        assign act = act1;
        wire unused_wbank1 = &{1'b0, wbank1, buf1_q, sel_in1_q};
    end
endgenerate

pipe_delay #(
    .WIDTH(2+NFW),
    .DEPTH(DLY)
) u_ctl_dly (
    .clk(clk),
    .rst_n(rst_n),
    .en(en),
    .in_valid(v1),
    .in_data({first1, last1, nf1}),
    .out_valid(ctl_t[3+NFW-1]),
    .out_data(ctl_t[2+NFW-1:0])
);

// ---------------------------------------------------------------- S2
wire [PE*CW-1:0] chunk1;

generate
    if (MODE == 2) begin : g_addsub
        localparam TW = IB + 1 + LOG_S;
        for (p = 0; p < PE; p = p + 1) begin : g_pe
            wire [SIMD*(IB+1)-1:0] ops;
            wire [TW-1:0] tsum;
            for (j = 0; j < SIMD; j = j + 1) begin : g_op
                wire [IB-1:0] x = act[j*IB +: IB];
                // one extra bit so that -x is representable for every x (and x - offset:
                // with offset <= 2^(IB-1) the value lies in [-2^(IB-1), 2^IB - 1])
                wire [IB:0] e = {(INPUT_SIGNED != 0) ? x[IB-1] : 1'b0, x} - OFFSET_E;
                assign ops[j*(IB+1) +: IB+1] = wt[p*SIMD + j] ? e : -e;
            end
            // forming +-(x - offset) is itself an add: registered apart from the tree
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
            adder_tree #(
                .N(SIMD),
                .IN_W(IB+1),
                .SIGNED(1),
                .PIPE_EVERY(PIPE_EVERY)
            ) u_tree (
                .clk(clk),
                .en(en),
                .in_data(leaves),
                .out_data(tsum)
            );
            assign chunk1[p*CW +: CW] = {tsum[TW-1], tsum};
        end
    end else begin : g_binary
        localparam PW = LOG_S + 1;
        if (MODE == 1) begin : g_pca
            // popcount(a) does not depend on the weights: one per chunk,
            // shared by all PEs.
            wire [PW-1:0] pc_a;
            if (PIPED != 0) begin : g_cmp
                popcount_compressor #(.N(SIMD), .PIPE_EVERY(PIPE_EVERY)) u_pca (
                    .clk(clk), .en(en), .in_data(act), .out_data(pc_a));
            end else begin : g_tree
                popcount #(.N(SIMD)) u_pca (
                    .clk(clk), .en(en), .in_data(act), .out_data(pc_a));
            end
        end
        for (p = 0; p < PE; p = p + 1) begin : g_pe
            wire [SIMD-1:0] w = wt[p*SIMD +: SIMD];
            wire [SIMD-1:0] m = (MODE == 1) ? (act & w) : ~(act ^ w);
            wire [PW-1:0] pc;
            if (PIPED != 0) begin : g_cmp
                // 6:3 counters cost about half the LUTs of a '+' tree cut by registers
                popcount_compressor #(.N(SIMD), .PIPE_EVERY(PIPE_EVERY)) u_pc (
                    .clk(clk), .en(en), .in_data(m), .out_data(pc));
            end else begin : g_tree
                popcount #(.N(SIMD)) u_pc (
                    .clk(clk), .en(en), .in_data(m), .out_data(pc));
            end
            if (MODE == 1) begin : g_and
                assign chunk1[p*CW +: CW] = {1'b0, pc, 1'b0} - {2'b00, g_pca.pc_a};
            end else begin : g_xnor
                assign chunk1[p*CW +: CW] = {1'b0, pc, 1'b0} - SIMD_32[CW-1:0];
            end
        end
    end
endgenerate

reg v2, first2, last2;
reg [PE*CW-1:0] chunk2;

always @(posedge clk) begin
    if (!rst_n) begin
        v2 <= 1'b0;
    end else if (en) begin
        v2 <= ctl_t[3+NFW-1];
    end
end

always @(posedge clk) begin
    if (en) begin
        chunk2 <= chunk1;
        first2 <= ctl_t[2+NFW-1];
        last2 <= ctl_t[1+NFW-1];
    end
end

// PIPE_EVERY > 0: the acc register is a stage of its own (vA/lastA beside
// it) and the output compares the registered sum; otherwise the sum being
// formed is compared in the same cycle.
wire vA, lastA;
generate
    if (PIPED != 0) begin : g_accst
        reg vA_r, lastA_r;
        always @(posedge clk) begin
            if (!rst_n) begin
                vA_r <= 1'b0;
            end else if (en) begin
                vA_r <= v2;
            end
        end
        always @(posedge clk) begin
            if (en) begin
                lastA_r <= last2;
            end
        end
        assign vA = vA_r;
        assign lastA = lastA_r;
    end else begin : g_noaccst
        assign vA = v2;
        assign lastA = last2;
    end
endgenerate
wire emit = vA && lastA;

// ---------------------------------------------------------------- out
// Thresholds of the current fold, registered alongside the value they are
// compared with (the chunk sums, or the acc register when PIPE_EVERY > 0). Declared
// at module level (not referenced inside g_tmem) because Yosys does not resolve
// hierarchical names into a generate block that is declared later in the file.
// Word layout: field p*NT + t (ACC_BITS each) = threshold t of PE p.
wire [PE*NT*ACC_BITS-1:0] thr2;

generate
    if (OUT_MODE != 1) begin : g_tmem
        reg [PE*NT*ACC_BITS-1:0] tmem [0:NF-1];
        reg [PE*NT*ACC_BITS-1:0] thr2_reg;
        initial $readmemh(THRESH_FILE, tmem);
        // read beside S2; with PIPE_EVERY > 0 registered again beside acc
        always @(posedge clk) begin
            if (en) begin
                thr2_reg <= tmem[ctl_t[NFW-1:0]];
            end
        end
        if (PIPED != 0) begin : g_thr_acc
            reg [PE*NT*ACC_BITS-1:0] thrA_reg;
            always @(posedge clk) begin
                if (en) begin
                    thrA_reg <= thr2_reg;
                end
            end
            assign thr2 = thrA_reg;
        end else begin : g_thr_s2
            assign thr2 = thr2_reg;
        end
    end else begin : g_notmem
        wire unused_nf = &{1'b0, ctl_t[NFW-1:0]};
        assign thr2 = {PE*NT*ACC_BITS{1'b0}};
        wire unused_thr2 = &{1'b0, thr2};
    end
endgenerate

wire [PE*OB-1:0] res2;

generate
    for (p = 0; p < PE; p = p + 1) begin : g_acc
        wire [CW-1:0] c = chunk2[p*CW +: CW];
        wire [AW-1:0] c_ext = {{(AW-CW+1){c[CW-1]}}, c[CW-2:0]};
        reg [AW-1:0] acc;
        wire [AW-1:0] acc_nx = (first2 ? {AW{1'b0}} : acc) + c_ext;
        wire [AW-1:0] total = (PIPED != 0) ? acc : acc_nx;
        always @(posedge clk) begin
            if (en && v2) begin
                acc <= acc_nx;
            end
        end
        if (OUT_MODE == 0) begin : g_thr
            wire [ACC_BITS-1:0] t = thr2[p*ACC_BITS +: ACC_BITS];
            wire [AW-1:0] t_ext = {{(AW-ACC_BITS+1){t[ACC_BITS-1]}}, t[ACC_BITS-2:0]};
            assign res2[p] = ($signed(total) >= $signed(t_ext));
        end else if (OUT_MODE == 2) begin : g_mt
            // y = number of thresholds met. Counting the compare bits (rather
            // than priority-encoding a thermometer code) is exact even when
            // the thresholds are not sorted, so the hardware has no
            // precondition to violate; the contract still asks for sorted
            // thresholds to match FINN's MultiThreshold.
            localparam CNT_W = $clog2(NT) + 1;
            wire [NT-1:0] ge;
            wire [CNT_W-1:0] cnt;
            for (q = 0; q < NT; q = q + 1) begin : g_cmp
                wire [ACC_BITS-1:0] tv = thr2[(p*NT + q)*ACC_BITS +: ACC_BITS];
                wire [AW-1:0] tv_ext = {{(AW-ACC_BITS+1){tv[ACC_BITS-1]}}, tv[ACC_BITS-2:0]};
                assign ge[q] = ($signed(total) >= $signed(tv_ext));
            end
            popcount #(.N(NT)) u_cnt (.clk(clk), .en(en), .in_data(ge), .out_data(cnt));
            // at most NT = 2^OUT_BITS - 1, so the count fits OUT_BITS bits
            assign res2[p*OB +: OB] = cnt[OB-1:0];
            if (CNT_W > OB) begin : g_unused
                wire unused_cnt = &{1'b0, cnt[CNT_W-1:OB]};
            end
        end else begin : g_raw
            // the total fits ACC_BITS by the contract; wider bits exist only
            // when a single chunk needs more room than the layer total.
            assign res2[p*OB +: OB] = total[ACC_BITS-1:0];
            if (AW > ACC_BITS) begin : g_unused
                wire unused_hi = &{1'b0, total[AW-1:ACC_BITS]};
            end
        end
    end
endgenerate

// ---------------------------------------------------------------- output
generate
    if (PIPED != 0) begin : g_queue
        // a fold's last step promises its result
        assign en = 1'b1;
        credit_queue #(
            .WIDTH(PE*OB),
            .DEPTH(QD)
        ) u_queue (
            .clk(clk),
            .rst_n(rst_n),
            .take(issue && sf_last),
            .credit(room),
            .in_data(res2),
            .in_valid(emit),
            .out_data(out_data),
            .out_valid(out_valid),
            .out_ready(out_ready)
        );
    end else begin : g_outreg
        // the only register that can hold a result the consumer has not taken
        reg out_valid_reg;
        reg [PE*OB-1:0] out_data_reg;
        assign en = !out_valid_reg || out_ready;
        assign room = 1'b1;
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
    end
endgenerate

endmodule

`resetall
