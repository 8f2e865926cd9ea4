"""Errors a user can fix; the CLI turns every `CgtrainError` into one line and exit code 2.

Each message says what is wrong, where (the field, file or line) and the fix. Every error class a
user can act on is here, one per area (request, dataset, run dir, split, model file, registry, ...);
the modules that raise them import them from here (and re-export the names they always had). The CLI
catches the base, so a new error class needs no change to the command line.
"""


class CgtrainError(Exception):
    """A problem the user can fix: the message names what, where and the fix."""


class RunDirError(CgtrainError):
    """The run directory cannot be used as asked (exists without --resume, request changed, locked, ...)."""


class SplitError(CgtrainError, ValueError):
    """The data cannot be split as the request asks (too few groups for test_fraction / folds, empty test set)."""


class PredictInputError(CgtrainError):
    """The input given to `cgtrain predict` cannot be read as a whole (missing, not a file, too big)."""


class RequestError(CgtrainError):
    """An invalid request: `problems` holds one human line per problem."""

    def __init__(self, problems: list[str], source: str = "request"):
        self.problems, self.source = problems, source
        super().__init__(f"{source}: " + "; ".join(problems))


class DatasetError(CgtrainError):
    """The dataset as a whole cannot be used; the message names the thing and the fix."""


class UnsafeModelError(CgtrainError):
    """The model file was refused: tampered, not a skops archive, or holds names outside the allowlist."""


class HFModelError(CgtrainError, ValueError):
    """A model_path that cannot be used; the message is one line with the fix."""


class PretrainError(CgtrainError, ValueError):
    """A pre-training setting or directory the user can fix; the message is one line."""


class RegistryError(CgtrainError):
    """A registry lookup or change cannot be done as asked (unknown name, version, alias...)."""


class NotComparable(CgtrainError):
    """The two versions were not tested on the same held-out rows."""


class PromotionRefused(CgtrainError):
    """The promotion gate found no sufficient evidence; the message holds the statistics (exit 1, not 2)."""


class TrackingError(CgtrainError):
    """Logging a run to MLflow failed; the run directory is untouched and still usable."""


class PathRefused(CgtrainError, ValueError):
    """A dataset path the service will not read; the message is one line saying why."""


class MissingExtra(CgtrainError, ValueError):
    """A feature needs an optional dependency that is not installed; the message gives the pip command."""

    def __init__(self, what: str, modules: list[str], extra: str):
        self.what, self.modules, self.extra = what, modules, extra
        super().__init__(f"{what} needs {', '.join(modules)}, which {'is' if len(modules) == 1 else 'are'} not "
                         f"installed; install with: pip install 'cgtrain[{extra}]'")
