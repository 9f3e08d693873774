"""Brevitas quantizer injectors, one idea per class.

Activations:
  BipolarActQuant     {-1,+1}, sign with sign(0) = +1
  UnipolarActQuant    {0,1},   1[x > 0]: a 1-bit unsigned integer quantizer with CEIL rounding
Weights:
  BinaryWeightNoScale           {-1,+1}
  BinaryWeightPerChannelScale   {-alpha_c,+alpha_c}, alpha_c = mean|w_c| per output channel
Inputs:
  Uint4InputQuant, Int8InputQuant   fixed-scale integer input quantizers for the first layer
"""
from .binary_act import BipolarActQuant, UnipolarActQuant
from .binary_weight import BinaryWeightNoScale, BinaryWeightPerChannelScale
from .int_input import Int8InputQuant, Uint4InputQuant

__all__ = [
    "BipolarActQuant",
    "UnipolarActQuant",
    "BinaryWeightNoScale",
    "BinaryWeightPerChannelScale",
    "Uint4InputQuant",
    "Int8InputQuant",
]
