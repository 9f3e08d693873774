"""Exception types shared across bnnforge.

Every error meant for a user carries a one-line message that names the file
(or directory) involved and what is wrong with it.
"""


class BnnforgeError(Exception):
    """Base class of all errors bnnforge reports to users."""


class DataError(BnnforgeError, ValueError):
    """A dataset file or directory is missing, malformed or inconsistent."""
