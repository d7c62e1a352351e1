"""How the command-line entry points report bad input: one line on stderr and exit status 2,
never a traceback; Ctrl-C exits 130 with one line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

# what bad input raises: wrong values, missing or unreadable files and folders
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, NotADirectoryError,
                                                 IsADirectoryError, PermissionError)


class OptionError(ValueError):
    """Bad input whose fix is an argument the caller passes: the message names it as Python
    knows it (`patch_nums=`), and `cli_message` as the command line does (`--patch-nums`)."""

    def __init__(self, template: str, python: str, cli: str):
        self.template, self.python, self.cli = template, python, cli
        super().__init__(template.replace("{option}", python))

    @property
    def cli_message(self) -> str:
        return self.template.replace("{option}", self.cli)


def first_line(err: BaseException, text: str | None = None) -> str:
    """The first line of `text` (default: the error's message), else the error's type name."""
    text = (str(err) if text is None else text).strip()
    return text.splitlines()[0] if text else type(err).__name__


def cli_text(err: BaseException) -> str:
    """The first line of an error as a command-line user should read it."""
    return first_line(err, err.cli_message if isinstance(err, OptionError) else None)


def report_error(prog: str, err: BaseException) -> int:
    """Print `PROG: error: <first line of err>` on stderr; returns the exit status 2."""
    print(f"{prog}: error: {cli_text(err)}", file=sys.stderr)
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


__all__ = ["USER_ERRORS", "OptionError", "cli_text", "report_error", "run_cli"]
