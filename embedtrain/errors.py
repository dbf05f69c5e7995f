"""Errors that reach the user as one line on stderr and exit code 2, never a traceback."""


class UsageError(Exception):
    """Bad input or parameters: the message is shown to the user as is."""


class TrainingDiverged(UsageError):
    """Training produced a non-finite value; the vectors would be garbage."""
