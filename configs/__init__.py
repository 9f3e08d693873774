"""Shipped configuration files: FINN-format foldings (``folding/*.json``) and the
paper defaults of each training method (``methods/*.yaml``), read through
``importlib.resources`` so they are found the same from a checkout and a wheel."""
