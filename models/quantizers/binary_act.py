"""1-bit activation quantizers."""
from brevitas.core.function_wrapper import TensorClamp
from brevitas.inject.enum import FloatToIntImplType, RestrictValueType, ScalingImplType
from brevitas.quant.base import UintQuant
from brevitas.quant.binary import SignedBinaryActPerTensorConst
from brevitas.quant.solver import ActQuantSolver


class BipolarActQuant(SignedBinaryActPerTensorConst):
    """{-1,+1} activations. Forward: +1 where x >= 0 (the tie goes to +1, as in
    QONNX's BipolarQuant); backward: straight-through inside [-1, 1] (hardtanh)."""

    scaling_const = 1.0


class UnipolarActQuant(UintQuant, ActQuantSolver):
    """{0,1} activations: 1 where x > 0, 0 where x <= 0 (the tie at the threshold is 0).

    A 1-bit unsigned integer quantizer with constant scale 1 and CEIL rounding:
    ceil(x) clamped to [0, 1]. Brevitas has no unsigned binary quantizer of its own,
    and exporting this one needs the handler in models/export.py (stock Brevitas
    0.13.4 would emit a BipolarQuant and silently turn {0,1} into {-1,+1}).
    The gradient passes where ceil(x) lies inside [0, 1], i.e. for -1 < x <= 1.
    The threshold itself is a separate module (models.layers.ChannelThreshold)
    in front of this quantizer, so it exports as a plain Sub the compiler folds.
    """

    bit_width = 1
    scaling_impl_type = ScalingImplType.CONST
    restrict_scaling_type = RestrictValueType.FP
    min_val = 0.0
    max_val = 1.0  # with 1 bit the solver turns this into the constant scale 1
    float_to_int_impl_type = FloatToIntImplType.CEIL
    tensor_clamp_impl = TensorClamp
