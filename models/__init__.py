"""bnnforge model side: data loading, training, quantizers, topologies, export.

Kept free of heavy imports on purpose: import the submodules you need
(``models.data``, ``models.train``, ...) explicitly.
"""
