"""bnnforge: binarized neural networks from Brevitas to bit-exact streaming Verilog.

The Python API (``bnnforge.build``, ``bnnforge.simulate``, ``bnnforge.synthesize``,
``bnnforge.train``, ``bnnforge.export``, ``bnnforge.shipped_folding``) mirrors the
command line; see ``bnnforge.api``. The functions are loaded on first use, so
importing a subpackage (``bnnforge.hw``, ``bnnforge.sim``, ...) pulls in nothing else.
"""
__version__ = "0.1.0"

_API = ("build", "export", "shipped_folding", "simulate", "synthesize", "train")
__all__ = ["__version__", *_API]


def __getattr__(name):
    if name in _API:
        from bnnforge import api

        return getattr(api, name)
    raise AttributeError(f"module 'bnnforge' has no attribute {name!r}")
