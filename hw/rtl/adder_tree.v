// Balanced binary adder tree, optionally pipelined.
//
// Sums N operands of IN_W bits (two's complement when SIGNED=1, unsigned
// otherwise). The tree is padded to the next power of two with zeros; the
// padding adders have constant inputs and are removed by synthesis. Each level
// grows by exactly one bit so every adder is only as wide as it must be, which
// is what keeps popcounts cheap compared with a serial accumulate loop.
//
// PIPE_EVERY = 0: purely combinational (clk and en unused), the caller places
// the registers. PIPE_EVERY = k > 0: the outputs of levels k, 2k, ... below the
// last are registered (loaded while en is high), so no clock cycle holds more
// than k adder levels inside the tree and the last one feeds the caller's
// register; out_data follows in_data by LATENCY = (clog2(N)-1)/k enabled edges.
`resetall
`timescale 1ns / 1ps
`default_nettype none

module adder_tree #(
    parameter N = 4,
    parameter IN_W = 1,
    parameter SIGNED = 0,
    parameter OUT_W = IN_W + $clog2(N),
    parameter PIPE_EVERY = 0
) (
    input  wire              clk,
    input  wire              en,
    input  wire [N*IN_W-1:0] in_data,
    output wire [OUT_W-1:0]  out_data
);

localparam LEVELS = $clog2(N);
localparam NP = 1 << LEVELS;
localparam LATENCY = (PIPE_EVERY > 0 && LEVELS > 1) ? (LEVELS - 1) / PIPE_EVERY : 0;

generate
    if (OUT_W != IN_W + LEVELS) begin : g_err
        adder_tree_error_OUT_W_must_be_IN_W_plus_clog2_N u_err();
    end
    if (PIPE_EVERY < 0) begin : g_err_pipe
        adder_tree_error_PIPE_EVERY_must_be_nonnegative u_err();
    end
    if (LATENCY == 0) begin : g_comb
        wire unused_clk_en = &{1'b0, clk, en};
    end
endgenerate

genvar l, i;
generate
    for (l = 0; l <= LEVELS; l = l + 1) begin : g_lvl
        // level l: NP>>l nodes of IN_W+l bits each
        wire [(NP>>l)*(IN_W+l)-1:0] v;
        if (l == 0) begin : g_leaf
            if (NP > N) begin : g_pad
                assign v = {{((NP-N)*IN_W){1'b0}}, in_data};
            end else begin : g_nopad
                assign v = in_data;
            end
        end else begin : g_add
            wire [(NP>>l)*(IN_W+l)-1:0] sum;
            for (i = 0; i < (NP>>l); i = i + 1) begin : g_node
                wire [IN_W+l-2:0] a = g_lvl[l-1].v[(2*i)*(IN_W+l-1) +: IN_W+l-1];
                wire [IN_W+l-2:0] b = g_lvl[l-1].v[(2*i+1)*(IN_W+l-1) +: IN_W+l-1];
                // one extra bit per level: sign- or zero-extend each child
                wire ea = (SIGNED != 0) ? a[IN_W+l-2] : 1'b0;
                wire eb = (SIGNED != 0) ? b[IN_W+l-2] : 1'b0;
                assign sum[i*(IN_W+l) +: IN_W+l] = {ea, a} + {eb, b};
            end
            if (PIPE_EVERY > 0 && l < LEVELS && (l % PIPE_EVERY) == 0) begin : g_reg
                reg [(NP>>l)*(IN_W+l)-1:0] r;
                always @(posedge clk) begin
                    if (en) begin
                        r <= sum;
                    end
                end
                assign v = r;
            end else begin : g_wire
                assign v = sum;
            end
        end
    end
endgenerate

assign out_data = g_lvl[LEVELS].v;

endmodule

`resetall
