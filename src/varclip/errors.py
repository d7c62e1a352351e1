"""How the command-line entry points report bad input: one line on stderr and exit status 2,
never a traceback; Ctrl-C exits 130 with one line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

# what bad input raises: wrong values, missing or unreadable files and folders
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, NotADirectoryError,
                                                 IsADirectoryError, PermissionError)


def report_error(prog: str, err: BaseException) -> int:
    """Print `PROG: error: <first line of err>` on stderr; returns the exit status 2."""
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return 2


def run_cli(fn: Callable[[Any], int | None], arg: Any, prog: str,
            errors: tuple[type[BaseException], ...] = USER_ERRORS, interrupted: str = "interrupted") -> int:
    """`fn(arg)` as a command: its exit status (None: 0), 2 after one line for `errors`, 130 on Ctrl-C."""
    try:
        return int(fn(arg) or 0)
    except errors as e:
        return report_error(prog, e)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130


__all__ = ["USER_ERRORS", "report_error", "run_cli"]
