"""The build flow: QONNX -> streamlined integer graph -> hardware layers -> folding -> RTL.

A build is a list of named steps (finn_flows.steps); each reads and writes an ONNX
model, and the builder saves every intermediate model in the build directory.
No torch anywhere in this package.
"""
