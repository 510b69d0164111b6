"""Errors that mean "the user asked for something that cannot be done".

The CLI turns a ``UserError`` into a one-line message and exit code 2; anything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: a missing path, a malformed file, an impossible option."""
