"""Errors a user can fix; the CLI turns them into messages and exit codes."""


class RunDirError(Exception):
    """The run directory cannot be used as asked (exists without --resume, request changed, ...)."""
