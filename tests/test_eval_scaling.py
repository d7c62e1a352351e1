from __future__ import annotations

import json
import math

import pytest

from test_train_fixtures import CONFIGS, make_data
from varclip.eval.scaling import fit_power_law, pareto_frontier, run_scaling


def test_power_law_fit_recovers_exponent():
    x = [1e3, 1e4, 1e5, 1e6]
    y = [5.0 * v ** -0.2 for v in x]
    law = fit_power_law(x, y)
    assert law.b == pytest.approx(-0.2, abs=1e-9) and law.a == pytest.approx(5.0, rel=1e-9)
    assert law.pearson == pytest.approx(-1.0, abs=1e-9)
    with pytest.raises(ValueError):
        fit_power_law([1.0], [2.0])


def test_pareto_frontier_keeps_only_improvements():
    pts = [(1, 5.0), (2, 4.0), (3, 4.5), (4, 3.0), (5, 3.0)]
    assert pareto_frontier(pts) == [(1, 5.0), (2, 4.0), (4, 3.0)]


def test_scaling_ladder_trains_with_the_trainer(tmp_path, one_thread):
    data = make_data(tmp_path / "data", per_class=4)
    res = run_scaling(str(CONFIGS / "tiny_class.yaml"), [1, 2], 32, token_budget=8 * 30 * 6,
                      test_data=str(data["class"]), out=tmp_path / "scaling",
                      overrides=[f"data.root={data['class']}", f"model.tokenizer={data['tok']}",
                                 "checkpoint.every=0"], eval_limit=8)
    assert [r.depth for r in res.rungs] == [1, 2]
    assert res.rungs[0].params < res.rungs[1].params
    assert all(math.isfinite(r.test_loss) for r in res.rungs)
    assert math.isfinite(res.n_law.b) and math.isfinite(res.c_law.b)
    for name in ("loss_vs_params.png", "loss_vs_compute.png", "scaling.json"):
        assert (tmp_path / "scaling" / name).is_file()
    saved = json.loads((tmp_path / "scaling" / "scaling.json").read_text())
    assert saved["n_law"]["points"] == 2
