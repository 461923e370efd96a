"""The one exception type that the command line turns into a one-line message."""


class SnnbenchError(Exception):
    """A problem the user can fix: the message says what is wrong and how to fix it."""
