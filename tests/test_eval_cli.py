"""Every eval command comes from one registry and keeps one contract: --json/--quiet, a table
or JSON on stdout, and bad input as one line with exit status 2."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

from varclip.cli import main
from varclip.eval.cli import EVAL_COMMANDS, build_parser


def _required_args(p: argparse.ArgumentParser) -> list[str]:
    out = []
    for a in p._actions:
        if not a.option_strings and a.dest != "help":
            out.append("x")
        elif a.required:
            out += [a.option_strings[0], "x"]
    return out


@pytest.mark.parametrize("name", sorted(EVAL_COMMANDS))
def test_every_eval_command_keeps_the_one_contract(name, monkeypatch, capsys):
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(sub) == set(EVAL_COMMANDS)
    p = sub[name]
    assert {"json_out", "quiet"} <= {a.dest for a in p._actions}
    args = _required_args(p)

    class Result:
        def table(self):
            return f"table of {name}"

        def to_dict(self):
            return {"command": name}

    command = EVAL_COMMANDS[name]
    monkeypatch.setitem(EVAL_COMMANDS, name, dataclasses.replace(command, run=lambda a: Result()))
    assert main(["eval", name, *args, "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"table of {name}"
    assert main(["eval", name, *args, "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out) == {"command": name}

    def fail(a):
        raise ValueError("bad input\nmore detail")

    monkeypatch.setitem(EVAL_COMMANDS, name, dataclasses.replace(command, run=fail))
    assert main(["eval", name, *args]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "varclip eval: error: bad input"
