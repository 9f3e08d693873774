// k-bit weight matrix-vector-threshold unit: one folded layer whose weights are
// small signed integers (WEIGHT_BITS = 2..4 two's complement, e.g. FINN's W2A2
// ternary {-1, 0, +1}), with the stream contract, schedule, pipeline, memories
// and output modes of mvtu (threshold / accumulator / multi-threshold).
//
// Computes acc[o] = sum_i W[o,i] * x[i] for MH outputs over an MW-element input,
// PE outputs and SIMD inputs per clock. Inputs as in mvtu: MODE 0 bipolar bits
// (1 = +1, 0 = -1), MODE 1 unipolar bits {0, 1}, MODE 2 INPUT_BITS-wide integers
// (signed, or unsigned levels standing for x - INPUT_OFFSET). See
// docs/hw_interfaces.md ("k-bit weight unit") for the weight memory layout.
//
// Two ways to form the per-PE chunk sum of SIMD lanes, chosen by ARCH:
//   ARCH 0 (lane products): per lane the product w_j * e_j (WEIGHT_BITS x
//          (INPUT_BITS+1) bits; a LUT multiplier up to 8 product bits, a shift-add
//          of the weight's bits beyond, where synthesis would use a DSP48 per lane),
//          then one adder tree of the SIMD products.
//   ARCH 1 (bit planes): w = -2^(B-1) w[B-1] + sum_{b<B-1} 2^b w[b], so the chunk
//          is sum_b +-2^b * S_b with S_b = sum_j (w_j[b] ? e_j : 0): B select-add
//          trees (mvtu_sparse's int lanes) and a shift-add of B partial sums.
// Both are exact; docs/hw_interfaces.md records their Yosys LUT counts.
//
// Schedule and pipeline are mvtu's (issue, S1 weight/input registers, S2 chunk
// sums and threshold read, out accumulate/compare): NF*SF cycles per frame in
// steady state, three-cycle latency, one stall enable driven by the output
// register.
//
// PIPE_EVERY = k > 0 deepens the pipeline for the clock rate, as in mvtu (same
// schedule, same cycles per frame, more edges to out_valid):
//   S1r   : the memory word and input word registered once more
//   lanes : MODE 2 registers its lane values x - offset (an add of its own)
//   ops   : ARCH 0 registers the SIMD lane products (a small multiplier each)
//   tree  : adder_tree registered after every k levels
//   planes: ARCH 1 registers the B plane sums before their shift-add
//   S2    : chunk sums
//   acc   : accumulate into the acc register only
//   out   : compare the registered accumulator with its registered threshold
// LATENCY = 3 for k = 0; for k > 0, 5 + (MODE == 2) + (ARCH == 0) + (ARCH == 1)
// + (clog2(SIMD)-1)/k (a term counting 0 where clog2(SIMD) <= 1).
`resetall
`timescale 1ns / 1ps
`default_nettype none

module mvtu_kbit #(
    parameter MW = 8,
    parameter MH = 4,
    parameter PE = 2,
    parameter SIMD = 4,
    parameter MODE = 0,          // input kind: 0 bipolar, 1 unipolar, 2 integer
    parameter WEIGHT_BITS = 2,   // signed weight width, 2..4
    parameter ARCH = 0,          // 0 lane products, 1 bit planes (see above)
    parameter INPUT_BITS = 1,    // 1 in modes 0/1, integer width in mode 2
    parameter INPUT_SIGNED = 0,  // mode 2 only
    parameter INPUT_OFFSET = 0,  // mode 2, unsigned inputs: each input stands for x - INPUT_OFFSET
                                 // (levels of a signed k-bit activation, 0 <= offset <= 2^(INPUT_BITS-1))
    parameter ACC_BITS = 8,
    parameter OUT_MODE = 0,      // 0 threshold (1 bit/output), 1 raw accumulator,
                                 // 2 multi-threshold (OUT_BITS bits/output)
    parameter OUT_BITS = 1,      // OUT_MODE 2 only: k, with 2^k-1 thresholds/output
    parameter WEIGHT_RAM = 0,    // weight memory: 0 the synthesis tool decides, 1 block RAM
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
localparam WB = WEIGHT_BITS;
// A lane value e (x, +-1, or x - offset) fits EW = IB+1 signed bits; a product
// w*e fits WB+EW, and a chunk of SIMD of them WB+EW+log2(SIMD) (the bit-plane
// form is bounded by the same sum of |w|*|e|).
localparam EW = IB + 1;
localparam CW = WB + EW + LOG_S;
// Accumulate at least as wide as a chunk, so that a configuration whose
// ACC_BITS is exactly the layer range (e.g. SF == 1) still adds exactly.
localparam AW = (ACC_BITS > CW) ? ACC_BITS : CW;
localparam SFW = (SF > 1) ? $clog2(SF) : 1;
localparam NFW = (NF > 1) ? $clog2(NF) : 1;
localparam WAW = (NF*SF > 1) ? $clog2(NF*SF) : 1;
localparam PIPED = (PIPE_EVERY > 0) ? 1 : 0;
localparam LANE_REG = (PIPED != 0 && MODE == 2) ? 1 : 0;
localparam OPS_REG = (PIPED != 0 && ARCH == 0) ? 1 : 0;
localparam PLANE_REG = (PIPED != 0 && ARCH == 1) ? 1 : 0;
localparam TREE_LAT = (PIPED != 0 && LOG_S > 1) ? (LOG_S - 1) / PIPE_EVERY : 0;
localparam DLY = PIPED + LANE_REG + OPS_REG + TREE_LAT + PLANE_REG;

// Elaboration-time parameter checks: an unknown module name is the clearest
// error Verilog-2005 can produce.
generate
    if (MW % SIMD != 0) begin : g_err_mw
        mvtu_kbit_error_MW_not_divisible_by_SIMD u_err();
    end
    if (MH % PE != 0) begin : g_err_mh
        mvtu_kbit_error_MH_not_divisible_by_PE u_err();
    end
    if (MODE < 0 || MODE > 2) begin : g_err_mode
        mvtu_kbit_error_MODE_must_be_0_1_or_2 u_err();
    end
    if (MODE != 2 && INPUT_BITS != 1) begin : g_err_ib
        mvtu_kbit_error_INPUT_BITS_must_be_1_in_MODE_0_and_1 u_err();
    end
    if (OUT_MODE < 0 || OUT_MODE > 2) begin : g_err_om
        mvtu_kbit_error_OUT_MODE_must_be_0_1_or_2 u_err();
    end
    if (OUT_MODE == 2 && (OUT_BITS < 1 || OUT_BITS > 8)) begin : g_err_ob
        mvtu_kbit_error_OUT_BITS_must_be_1_to_8_in_OUT_MODE_2 u_err();
    end
    if (INPUT_OFFSET != 0 && (MODE != 2 || INPUT_SIGNED != 0 || INPUT_OFFSET < 0
                              || INPUT_OFFSET > (1 << (INPUT_BITS - 1)))) begin : g_err_off
        mvtu_kbit_error_INPUT_OFFSET_needs_MODE_2_unsigned_and_at_most_half_range u_err();
    end
    if (WEIGHT_BITS < 2 || WEIGHT_BITS > 4) begin : g_err_wb
        mvtu_kbit_error_WEIGHT_BITS_must_be_2_to_4 u_err();
    end
    if (ARCH < 0 || ARCH > 1) begin : g_err_arch
        mvtu_kbit_error_ARCH_must_be_0_or_1 u_err();
    end
    if (ACC_BITS < 2) begin : g_err_acc
        mvtu_kbit_error_ACC_BITS_must_be_at_least_2 u_err();
    end
    if (PIPE_EVERY < 0) begin : g_err_pipe
        mvtu_kbit_error_PIPE_EVERY_must_be_nonnegative u_err();
    end
endgenerate

// 32-bit constants, sliced where compared, keep the lint width checks quiet
localparam [31:0] SF_LAST = SF - 1;
localparam [31:0] NF_LAST = NF - 1;
localparam [31:0] OFFSET_32 = INPUT_OFFSET;
localparam [IB:0] OFFSET_E = OFFSET_32[IB:0];

reg out_valid_reg;
reg [PE*OB-1:0] out_data_reg;

// Global stall: only the output register can be blocked.
wire en = !out_valid_reg || out_ready;

// ---------------------------------------------------------------- issue
reg [SFW-1:0] sf;
reg [NFW-1:0] nf;
reg [WAW-1:0] waddr;    // nf*SF + sf, kept as a counter to avoid a multiplier

wire nf_first = (nf == {NFW{1'b0}});
wire sf_last = (sf == SF_LAST[SFW-1:0]);
wire nf_last = (nf == NF_LAST[NFW-1:0]);
wire issue = en && (!nf_first || in_valid);

assign in_ready = en && nf_first;

always @(posedge clk) begin
    if (!rst_n) begin
        sf <= {SFW{1'b0}};
        nf <= {NFW{1'b0}};
        waddr <= {WAW{1'b0}};
    end else if (issue) begin
        if (sf_last) begin
            sf <= {SFW{1'b0}};
            if (nf_last) begin
                nf <= {NFW{1'b0}};
                waddr <= {WAW{1'b0}};
            end else begin
                nf <= nf + 1'b1;
                waddr <= waddr + 1'b1;
            end
        end else begin
            sf <= sf + 1'b1;
            waddr <= waddr + 1'b1;
        end
    end
end

// ---------------------------------------------------------------- S1
// Weight memory. Left alone, Yosys maps a shallow, very wide ROM (a conv layer
// with PE*SIMD = 512 and 144 words, say) into thousands of LUTs; WEIGHT_RAM = 1
// asks for block RAM instead (the compiler sets it where its resource model
// prefers BRAM). Both read through the same registered port.
wire [PE*SIMD*WB-1:0] wword;
generate
    if (WEIGHT_RAM == 1) begin : g_wbram
        (* ram_style = "block", rom_style = "block" *)
        reg [PE*SIMD*WB-1:0] wmem [0:NF*SF-1];
        initial $readmemh(WEIGHT_FILE, wmem);
        assign wword = wmem[waddr];
    end else begin : g_wauto
        reg [PE*SIMD*WB-1:0] wmem [0:NF*SF-1];
        initial $readmemh(WEIGHT_FILE, wmem);
        assign wword = wmem[waddr];
    end
endgenerate

reg v1, first1, last1;
reg [NFW-1:0] nf1;
reg [PE*SIMD*WB-1:0] w1;
reg [SIMD*IB-1:0] in1;
wire [SIMD*IB-1:0] act1;

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
    end else begin : g_nobuf
        assign act1 = in1;
    end
endgenerate

// ---------------------------------------------------------------- S1r
// wt/act: the weights and inputs the lanes are formed from; ctl_t: v, first,
// last, nf of the chunk sums leaving S2's input, delayed by DLY enabled edges
// beside the data.
wire [PE*SIMD*WB-1:0] wt;
wire [SIMD*IB-1:0] act;
wire [3+NFW-1:0] ctl_t;

genvar p, j, q, b;
generate
    if (PIPED != 0) begin : g_s1r
        reg [PE*SIMD*WB-1:0] w1r;
        reg [SIMD*IB-1:0] act1r;
        always @(posedge clk) begin
            if (en) begin
                w1r <= w1;
                act1r <= act1;
            end
        end
        assign wt = w1r;
        assign act = act1r;
    end else begin : g_s1
        assign wt = w1;
        assign act = act1;
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

// ---------------------------------------------------------------- lanes
// Lane values e_j, shared by all PEs: +-1 (bipolar), 0/1 (unipolar), the
// integer (sign- or zero-extended) minus INPUT_OFFSET. The weights beside them
// (wl) pass through the same number of registers.
wire [SIMD*EW-1:0] lane;
wire [PE*SIMD*WB-1:0] wl;
wire [PE*CW-1:0] chunk1;
wire [SIMD*EW-1:0] lane0;

generate
    for (j = 0; j < SIMD; j = j + 1) begin : g_lane
        wire [IB-1:0] x = act[j*IB +: IB];
        if (MODE == 0) begin : g_bip
            assign lane0[j*EW +: EW] = x[0] ? {{(EW-1){1'b0}}, 1'b1} : {EW{1'b1}};
        end else if (MODE == 1) begin : g_uni
            assign lane0[j*EW +: EW] = {1'b0, x};
        end else begin : g_int
            // with offset <= 2^(IB-1) the value lies in [-2^(IB-1), 2^IB - 1]
            assign lane0[j*EW +: EW] = {(INPUT_SIGNED != 0) ? x[IB-1] : 1'b0, x} - OFFSET_E;
        end
    end
    if (LANE_REG != 0) begin : g_lanereg
        reg [SIMD*EW-1:0] lane_r;
        reg [PE*SIMD*WB-1:0] wl_r;
        always @(posedge clk) begin
            if (en) begin
                lane_r <= lane0;
                wl_r <= wt;
            end
        end
        assign lane = lane_r;
        assign wl = wl_r;
    end else begin : g_lanewire
        assign lane = lane0;
        assign wl = wt;
    end
endgenerate

// ---------------------------------------------------------------- S2
generate
    for (p = 0; p < PE; p = p + 1) begin : g_pe
        if (ARCH == 0) begin : g_mul
            localparam PW = WB + EW;
            wire [SIMD*PW-1:0] prods;
            for (j = 0; j < SIMD; j = j + 1) begin : g_prod
                wire [WB-1:0] w = wl[(p*SIMD + j)*WB +: WB];
                wire [PW-1:0] e_ext = {{WB{lane[j*EW + EW - 1]}}, lane[j*EW +: EW]};
                if (PW <= 8) begin : g_lutmul
                    // a same-width signed multiply of the sign-extended operands, of which
                    // the low PW bits are the exact product; Yosys maps it to LUTs
                    wire signed [PW-1:0] ws = {{EW{w[WB-1]}}, w};
                    wire signed [PW-1:0] es = e_ext;
                    wire signed [PW-1:0] prod = ws * es;
                    assign prods[j*PW +: PW] = prod;
                end else begin : g_shiftadd
                    // 9 bits and more (8-bit inputs, or 4-bit weights x 4-bit inputs): Yosys
                    // would map a multiply to one DSP48 per lane, so form w*e as the
                    // shift-add of the weight's bits (the sign bit subtracts)
                    wire [WB*PW-1:0] pp;
                    for (b = 0; b < WB; b = b + 1) begin : g_bit
                        wire [PW-1:0] term = w[b] ? (e_ext << b) : {PW{1'b0}};
                        if (b == 0) begin : g_first
                            assign pp[0 +: PW] = term;
                        end else if (b == WB - 1) begin : g_sign
                            assign pp[b*PW +: PW] = pp[(b-1)*PW +: PW] - term;
                        end else begin : g_mid
                            assign pp[b*PW +: PW] = pp[(b-1)*PW +: PW] + term;
                        end
                    end
                    assign prods[j*PW +: PW] = pp[(WB-1)*PW +: PW];
                end
            end
            // the products are small multipliers: registered apart from the tree
            wire [SIMD*PW-1:0] leaves;
            if (OPS_REG != 0) begin : g_opsreg
                reg [SIMD*PW-1:0] prods_r;
                always @(posedge clk) begin
                    if (en) begin
                        prods_r <= prods;
                    end
                end
                assign leaves = prods_r;
            end else begin : g_opswire
                assign leaves = prods;
            end
            adder_tree #(
                .N(SIMD),
                .IN_W(PW),
                .SIGNED(1),
                .PIPE_EVERY(PIPE_EVERY)
            ) u_tree (
                .clk(clk), .en(en),
                .in_data(leaves),
                .out_data(chunk1[p*CW +: CW])
            );
        end else begin : g_planes
            localparam SW = EW + LOG_S;
            // plane sums S_b, then their running sum, plane b adding (or, the sign
            // plane, subtracting) S_b << b
            wire [WB*SW-1:0] s_all;
            wire [WB*CW-1:0] psum;
            for (b = 0; b < WB; b = b + 1) begin : g_plane
                wire [SIMD*EW-1:0] sel;
                wire [SW-1:0] s;
                for (j = 0; j < SIMD; j = j + 1) begin : g_sel
                    assign sel[j*EW +: EW] = wl[(p*SIMD + j)*WB + b] ? lane[j*EW +: EW] : {EW{1'b0}};
                end
                adder_tree #(
                    .N(SIMD),
                    .IN_W(EW),
                    .SIGNED(1),
                    .PIPE_EVERY(PIPE_EVERY)
                ) u_tree (
                    .clk(clk), .en(en),
                    .in_data(sel),
                    .out_data(s)
                );
                assign s_all[b*SW +: SW] = s;
            end
            wire [WB*SW-1:0] s_st;
            if (PLANE_REG != 0) begin : g_planereg
                reg [WB*SW-1:0] s_r;
                always @(posedge clk) begin
                    if (en) begin
                        s_r <= s_all;
                    end
                end
                assign s_st = s_r;
            end else begin : g_planewire
                assign s_st = s_all;
            end
            for (b = 0; b < WB; b = b + 1) begin : g_comb
                wire [SW-1:0] s = s_st[b*SW +: SW];
                wire [CW-1:0] s_ext = {{(CW-SW){s[SW-1]}}, s};
                wire [CW-1:0] term = s_ext << b;
                if (b == 0) begin : g_first
                    assign psum[0 +: CW] = term;
                end else if (b == WB - 1) begin : g_sign
                    assign psum[b*CW +: CW] = psum[(b-1)*CW +: CW] - term;
                end else begin : g_mid
                    assign psum[b*CW +: CW] = psum[(b-1)*CW +: CW] + term;
                end
            end
            assign chunk1[p*CW +: CW] = psum[(WB-1)*CW +: CW];
        end
    end
endgenerate

reg v2, first2, last2;
reg [NFW-1:0] nf2;
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
        nf2 <= ctl_t[NFW-1:0];
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
// compared with (the chunk sums, or the acc register when PIPE_EVERY > 0).
// Declared at module level (not referenced inside g_tmem) because Yosys does
// not resolve hierarchical names into a generate block that is declared later
// in the file. Word layout: field p*NT + t (ACC_BITS each) = threshold t of PE p.
wire [PE*NT*ACC_BITS-1:0] thr2;

generate
    if (OUT_MODE != 1) begin : g_tmem
        reg [PE*NT*ACC_BITS-1:0] tmem [0:NF-1];
        reg [PE*NT*ACC_BITS-1:0] thr2_reg;
        initial $readmemh(THRESH_FILE, tmem);
        wire [NFW-1:0] nf_rd = (PIPED != 0) ? nf2 : ctl_t[NFW-1:0];
        always @(posedge clk) begin
            if (en) begin
                thr2_reg <= tmem[nf_rd];
            end
        end
        assign thr2 = thr2_reg;
    end else begin : g_notmem
        wire unused_nf = &{1'b0, ctl_t[NFW-1:0], nf2};
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
