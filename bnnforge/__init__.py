"""bnnforge: binarized neural networks from Brevitas to bit-exact streaming Verilog."""
__version__ = "0.1.0"
