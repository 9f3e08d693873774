"""Exception types shared across bnnforge.

Every error meant for a user carries a one-line message that names the file
(or directory) involved and what is wrong with it.
"""


from bnnforge.errors import BnnforgeError  # one base class for every stage


class DataError(BnnforgeError, ValueError):
    """A dataset file or directory is missing, malformed or inconsistent."""
