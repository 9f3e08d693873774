"""From a generated accelerator to a Vivado project for PYNQ boards (xc7z020).

`wrapper`: the DMA-facing Verilog wrapper (power-of-two AXI-Stream widths, batch TLAST)
and the stream layout the PYNQ driver packs to; `project`: the Tcl project script and
the self-contained project directory; `capacity`: the Yosys estimate against the part
before any Vivado run; `tclcheck`: the offline check of the Tcl against a recording
stand-in for the Vivado commands.
"""
