"""Binary weight quantizers."""
from brevitas.core.quant import BinaryQuant
from brevitas.inject.enum import ScalingImplType, StatsOp
from brevitas.quant.binary import SignedBinaryWeightPerTensorConst


class BinaryWeightNoScale(SignedBinaryWeightPerTensorConst):
    """{-1,+1} weights; latent weights are clamped in place to [-1, 1] (STE)."""

    scaling_const = 1.0


class BinaryWeightPerChannelScale(SignedBinaryWeightPerTensorConst):
    """sign(w) * alpha_c with alpha_c = mean(|w_c|) per output channel (XNOR-Net).

    No clamp to [-alpha, alpha] before the sign: an in-place clamp to a scale that is
    itself computed from the weights would shrink them step after step. Latent
    weights are kept in [-1, 1] by the training loop (clip_latent_weights) instead.
    """

    tensor_quant = BinaryQuant
    scaling_impl_type = ScalingImplType.STATS
    scaling_stats_op = StatsOp.AVE
    scaling_per_output_channel = True
