"""Errors a user can fix; the CLI turns every `CgtrainError` into one line and exit code 2.

Each message says what is wrong, where (the field, file or line) and the fix. Modules define
their own subclasses (`DatasetError`, `RequestError`, `RegistryError`, ...); the CLI catches the
base, so a new error class needs no change to the command line.
"""


class CgtrainError(Exception):
    """A problem the user can fix: the message names what, where and the fix."""


class RunDirError(CgtrainError):
    """The run directory cannot be used as asked (exists without --resume, request changed, locked, ...)."""


class SplitError(CgtrainError, ValueError):
    """The data cannot be split as the request asks (too few groups for test_fraction / folds, empty test set)."""


class PredictInputError(CgtrainError):
    """The input given to `cgtrain predict` cannot be read as a whole (missing, not a file, too big)."""
