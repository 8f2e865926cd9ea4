"""The one handler every `cgtrain` command runs inside: user errors -> one line, never a traceback.

- `CgtrainError` (every error class a user can act on derives from it): `error: <what, where, fix>`, exit 2;
  an invalid request prints one line per problem.
- A file that cannot be written (disk full, file-size limit, read-only, permission denied),
  from Python or from SQLite: one line naming the file, exit 2, plus how to resume if given.
- Ctrl-C: `interrupted; resume with ...`, exit 130 (every finished result is already on disk).
- `refusals` (e.g. the promotion gate saying no): `refused: <Type>: <statistics>`, exit 1.
"""
from __future__ import annotations

import errno
import sqlite3
from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console

from cgtrain.errors import CgtrainError, RequestError

err = Console(stderr=True, soft_wrap=True)

EXIT_FAILED, EXIT_USER, EXIT_INTERRUPTED = 1, 2, 130
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def say_error(text: str) -> None:
    err.print(text, markup=False, highlight=False)


@contextmanager
def user_errors(refusals: tuple[type[BaseException], ...] = (), resume_hint: str | None = None,
                also: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Turn what a user can fix into one line and an exit code; `also`: more types treated as user errors."""
    try:
        yield
    except RequestError as exc:
        say_error(f"invalid request ({exc.source}):")
        for line in exc.problems:
            say_error(f"  {line}")  # one line per problem
        raise typer.Exit(EXIT_USER)
    except refusals as exc:
        say_error(f"refused: {type(exc).__name__}: {_one_line(exc)}")
        raise typer.Exit(EXIT_FAILED)
    except (CgtrainError, *also) as exc:
        say_error(f"error: {_one_line(exc)}")
        raise typer.Exit(EXIT_USER)
    except KeyboardInterrupt:
        say_error("interrupted" + (f"; every finished trial is kept; resume with {resume_hint}" if resume_hint else ""))
        raise typer.Exit(EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - only storage failures are handled; the rest re-raised
        problem = storage_problem(exc)
        if problem is None:
            raise
        resumable = resume_hint and "free space" in problem
        say_error(f"error: {problem}" + (f"; then resume with {resume_hint}" if resumable else ""))
        raise typer.Exit(EXIT_USER)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]


def storage_problem(exc: BaseException) -> str | None:
    """One line for a write that failed for lack of space or permission, else None."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in _FULL | _READ_ONLY:
            where = e.filename or "a file"
            if e.errno in _FULL:
                return (f"cannot write {where}: {e.strerror} (disk full or over the file-size limit); "
                        f"free space")
            return f"cannot write {where}: {e.strerror}; choose a writable --run-dir / --out or fix its permissions"
        if isinstance(e, sqlite3.OperationalError) or type(e).__name__ == "OperationalError":
            text = str(e).lower()
            if "disk is full" in text or "disk i/o error" in text:
                return (f"cannot write the study database: {_sqlite_reason(text)} (disk full or over the "
                        f"file-size limit?); free space")
            if "readonly" in text or "unable to open database" in text:
                return (f"cannot write the study database: {_sqlite_reason(text)}; choose a writable --run-dir "
                        f"or fix its permissions")
    return None


def _sqlite_reason(text: str) -> str:
    return text.split("\n")[0].split("[sql")[0].strip().removeprefix("(sqlite3.operationalerror)").strip()
