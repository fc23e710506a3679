"""Errors shared by the command line and the modules it calls."""


class UsageError(Exception):
    """A user's mistake: printed as one line, exit status 2, no traceback."""
