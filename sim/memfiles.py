"""The $readmemh image writers live in hw/memfiles.py (the code generator owns the
format); re-exported here for the testbenches."""
from bnnforge.hw.memfiles import pack_fields, threshold_words, unpack_fields, weight_words, write_memh

__all__ = ["pack_fields", "threshold_words", "unpack_fields", "weight_words", "write_memh"]
