"""Imports only run downwards (docs/ARCHITECTURE.md): read every module's imports with ast,
function-level (lazy) imports included, and check them against the layers."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "varclip"

ENTRY = {"cli", "app", "eval", "bench", "entry", "pipeline", "train"}  # entry points and what only they use
CORE = ["model", "tokenizer", "data", "text", "sampling", "config", "checkpoints", "devices", "grid", "weights"]
# unit -> the units it must never import
RULES = {**{unit: ENTRY for unit in CORE},
         "train": {"eval", "cli", "app", "bench", "entry"},
         "config": {p.stem for p in PACKAGE.iterdir() if p.stem not in ("config", "__init__") and
                    (p.suffix == ".py" or p.is_dir())}}


def _unit(parts: list[str]) -> str:
    """varclip.model.blocks -> model; varclip.config -> config."""
    return parts[1] if len(parts) > 1 else ""


@functools.cache
def imports_by_unit() -> dict[str, set[tuple[str, str]]]:
    """unit -> {(imported unit, importing file)} for every import of a varclip module."""
    out: dict[str, set[tuple[str, str]]] = {}
    for file in PACKAGE.rglob("*.py"):
        rel = file.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        package = parts[:-1]  # the package the module lives in (for relative imports)
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                names = [base + node.module.split(".")] if node.module else [base + [a.name] for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name.split(".") for a in node.names]
            else:
                continue
            for target in names:
                if target[0] == "varclip":
                    out.setdefault(_unit(parts), set()).add((_unit(target), str(rel)))
    return out


def test_the_walk_sees_imports():
    graph = imports_by_unit()
    assert ("config", "varclip/model/transformer") in graph["model"]
    assert ("data", "varclip/train/tokenizer") in graph["train"]  # a relative import inside a sub-package


@pytest.mark.parametrize("unit", sorted(RULES))
def test_no_upward_imports(unit):
    graph = imports_by_unit()
    bad = sorted(f"{file} imports varclip.{target}" for target, file in graph.get(unit, ()) if target in RULES[unit])
    assert not bad, "imports that run upwards: " + "; ".join(bad)
