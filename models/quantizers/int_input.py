"""Fixed-scale integer quantizers for first-layer inputs in [0, 1] (or [-1, 1))."""
from brevitas.inject.enum import RestrictValueType, ScalingImplType
from brevitas.quant.base import IntQuant, UintQuant
from brevitas.quant.solver import ActQuantSolver


class Uint4InputQuant(UintQuant, ActQuantSolver):
    """Inputs in [0, 1] to the integers 0..15 (scale 1/15, round half to even)."""

    bit_width = 4
    scaling_impl_type = ScalingImplType.CONST
    restrict_scaling_type = RestrictValueType.FP
    min_val = 0.0
    max_val = 1.0


class Int8InputQuant(IntQuant, ActQuantSolver):
    """Q1.7 inputs: [-1, 1) to the integers -128..127 (scale 2**-7), as in BNN-PYNQ CNV."""

    bit_width = 8
    scaling_impl_type = ScalingImplType.CONST
    restrict_scaling_type = RestrictValueType.FP
    min_val = -1.0
    max_val = 1.0 - 2.0**-7
