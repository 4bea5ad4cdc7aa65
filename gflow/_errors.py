"""The errors gflow raises for a user's input: one base class, one line that says what to do."""


class GflowError(ValueError):
    """Base of every error gflow raises for a user's input: one line that says what to do."""


class ProblemError(GflowError):
    """A `Problem` (or an argument of `simulate`/`gd`) is malformed. The message says how to fix it."""
