"""The problems a user must fix, as one tree. Scripts print them as one line, without a traceback; every other
exception is a bug and keeps its traceback."""


class UserError(Exception):
    """Something the user must fix before the step can run; the message says what and how."""


class BadParameter(UserError, ValueError):
    """A parameter name or value that cannot work."""


class DatasetError(UserError):
    """A dataset that cannot be trained on."""


class BackboneError(UserError):
    """A backbone that cannot be built (unknown name, weights missing or unreadable)."""


class MissingArtifact(UserError):
    """An input that an earlier step writes is not there; the message names that step."""


class StaleArtifact(UserError):
    """An input was made from other data or parameters than the ones in effect; the message names the step to rerun."""
