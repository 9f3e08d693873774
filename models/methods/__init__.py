"""Five binarization methods on the bnnforge digits MLP (see README.md here and
../shared/reference/methods.md):

  sibnn          Si-BNN: {0,1} activations, trainable threshold/scale, asymmetric window
  binary_domain  binary domain generalization: weights (c/q)*(q*B + m), sparsity regularizer
  sdbnn          SD-BNN: WSD weights, static ASD shift, IR-Net EDE (sdbnn_se: dynamic SE ASD)
  margin         margin-aware: Binary-L2 regularizer, sign weights, k-bit activations
  ftbnn          FTBNN: FPReLU before the sign, grouped (block-diagonal) binary layers
plus the baselines bipolar / unipolar with the same widths, and residual nets with the
Si-BNN or FTBNN block (sibnn_resnet, ftbnn_resnet: models.residual).

  build_method_model(name, hidden=(256, 256), conv=(), pool_after=(), conv_pad=0, **params) -> MethodNet
      (conv: 3x3 conv channels before the FC layers; every method has a conv block)
  train_method(name, data, out_dir, epochs, seed, ...)   -> metrics dict
  export_method_qonnx(model, path), recover_binary_domain(onnx_path_or_proto)
"""
from .registry import (ALL_METHODS, METHODS, RESIDUAL_METHODS, build_method_model,  # noqa: F401
                       build_residual_method_model, load_method_config, method_defaults)


def train_method(*args, **kwargs):
    from .train import train_method as _tm
    return _tm(*args, **kwargs)
