// Two's-complement width change: sign-extend when OUT_W > IN_W, keep the low
// OUT_W bits otherwise.
//
// Truncation is deliberate: the block-sparse unit does all of its arithmetic
// modulo 2^ACC_BITS (see mvtu_sparse.v), which is exact because only the
// final value has to fit. A module keeps the two cases (and the lint-clean
// handling of the dropped bits) in one place.
`resetall
`timescale 1ns / 1ps
`default_nettype none

module sign_resize #(
    parameter IN_W = 4,
    parameter OUT_W = 8
) (
    input  wire [IN_W-1:0]  in_data,
    output wire [OUT_W-1:0] out_data
);

generate
    if (OUT_W > IN_W) begin : g_ext
        assign out_data = {{(OUT_W-IN_W){in_data[IN_W-1]}}, in_data};
    end else if (OUT_W == IN_W) begin : g_same
        assign out_data = in_data;
    end else begin : g_trunc
        assign out_data = in_data[OUT_W-1:0];
        wire unused_hi = &{1'b0, in_data[IN_W-1:OUT_W]};
    end
endgenerate

endmodule

`resetall
