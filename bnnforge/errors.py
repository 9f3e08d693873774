"""Errors every stage raises for bad input: one line naming the node, file or field."""


class BnnforgeError(Exception):
    """Base class of all errors bnnforge reports to users (printed as one line)."""
