"""The one error type a user sees: a single line naming the file or value and the reason."""


class ClaraError(Exception):
    """An error whose message is shown to the user as is, with exit status 1."""


class InputError(ClaraError):
    """A file or token sequence that cannot be read; the message names it and says why."""
