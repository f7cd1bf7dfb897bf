"""The one base class of the problems a user must fix; scripts print them as one line, without a traceback."""


class UserError(RuntimeError):
    """Something the user must fix before the step can run."""
