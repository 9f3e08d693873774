"""Build steps, one module each. Every step: (onnx.ModelProto, BuildConfig) -> onnx.ModelProto."""
