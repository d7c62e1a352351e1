"""Golden vectors of the official code: every implemented check must pass."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from varclip.parity import run_case, run_layouts


def _cases(parity_dir):
    return sorted(p for p in parity_dir.iterdir() if p.is_dir())


def test_every_case_folder(parity_dir):
    for case in _cases(parity_dir):
        report = run_case(case)
        assert report["checks"], case
        failed = [c for c in report["checks"] if not c["ok"] and c.get("note") != "not implemented"]
        assert not failed, f"{case.name}: {failed[:5]}"


@pytest.mark.parametrize("name", ["c2i-small", "t2i-small"])
def test_model_cases_fully_pass(parity_dir, name):
    report = run_case(parity_dir / name)
    assert report["ok"], [c for c in report["checks"] if not c["ok"]]
    names = {c["name"] for c in report["checks"]}
    assert "logits" in names and "recon" in names
    if name == "c2i-small":
        assert any(n.startswith("edit_") for n in names)
        assert any(n.startswith("sample_random_labels_label") for n in names)


def test_layouts(parity_dir):
    report = run_layouts(parity_dir / "official_layouts.json")
    assert report["ok"], [c for c in report["checks"] if not c["ok"]]
    assert len(report["checks"]) == 7


def test_cli_parity_json_and_exit_code(parity_dir):
    out = subprocess.run([sys.executable, "-m", "varclip.cli", "parity", "--layouts",
                          str(parity_dir / "official_layouts.json")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is True and {"name", "max_abs_diff", "tol", "ok"} <= set(report["checks"][0])
