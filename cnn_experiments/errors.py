"""The error a user sees as one line: a mistake in what they asked for, or a fault of their environment."""


class UserError(Exception):
    """A bad option, file or folder, missing data, no network, a full disk: the CLI prints the message as one line
    and exits with code 2. Anything else is a bug in this code and keeps its traceback."""


class DataError(UserError):
    """A data set that cannot be had or read; the message names it and what to do."""


class StoreError(UserError):
    "A results folder that cannot be used: busy, not writable, full, or a runs file without its columns."
