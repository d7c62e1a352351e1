"""`varclip scaling`: a ladder of small models trained for the same token budget, and the
power laws of the VAR paper fitted to them.

Each rung is the generator trainer (`varclip.train.generator.train`) run on a training recipe
with the depth overridden (width = width_per_depth x depth, as VAR ties width to depth). Then:
- N-law: held-out test loss (`varclip.eval.tokens`) against the parameter count N;
- C-law: the training loss logged along every run against the compute spent so far,
  C = 6 N x tokens seen, keeping the Pareto frontier (the lowest loss reached at each compute)
  as the paper does.
Both fits are L = a * X^b by least squares in log-log space; the Pearson correlation of that
log-log data says how straight the line is (the paper reports about -0.998).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


@dataclass
class PowerLaw:
    a: float
    b: float  # the exponent
    pearson: float  # correlation of log X and log L
    points: int

    def __str__(self) -> str:
        return f"L = {self.a:.4g} * X^{self.b:.4f}  (Pearson r of log-log {self.pearson:.4f}, {self.points} points)"


def fit_power_law(x: list[float], y: list[float]) -> PowerLaw:
    lx, ly = np.log(np.asarray(x, dtype=np.float64)), np.log(np.asarray(y, dtype=np.float64))
    if len(lx) < 2 or np.ptp(lx) == 0:
        raise ValueError("a power-law fit needs at least two distinct x values")
    b, log_a = np.polyfit(lx, ly, 1)
    r = float(np.corrcoef(lx, ly)[0, 1]) if len(lx) > 2 or np.ptp(ly) > 0 else float("nan")
    return PowerLaw(float(math.exp(log_a)), float(b), r, len(lx))


def pareto_frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(compute, loss) points -> those with a lower loss than every point of less compute."""
    best, out = math.inf, []
    for c, loss in sorted(points):
        if loss < best:
            best = loss
            out.append((c, loss))
    return out


@dataclass
class Rung:
    depth: int
    width: int
    params: int
    steps: int
    tokens: int
    test_loss: float
    curve: list[tuple[float, float]] = field(default_factory=list)  # (compute, train loss)


@dataclass
class ScalingResult:
    rungs: list[Rung]
    n_law: PowerLaw
    c_law: PowerLaw

    def table(self) -> str:
        lines = [f"{'depth':>5} {'width':>5} {'params':>10} {'steps':>6} {'tokens':>10} {'test loss':>9}"]
        lines += [f"{r.depth:>5} {r.width:>5} {r.params:>10,} {r.steps:>6} {r.tokens:>10,} {r.test_loss:>9.4f}"
                  for r in self.rungs]
        lines += ["", f"loss vs parameters: {self.n_law}", f"loss vs compute:    {self.c_law}"]
        return "\n".join(lines)


def plot_loglog(path: Path, series: list[tuple[float, float]], law: PowerLaw, xlabel: str, title: str) -> None:
    """A small log-log scatter with the fitted line, drawn with PIL (no plotting dependency)."""
    W, H, m = 520, 380, 56
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    lx = np.log10([p[0] for p in series])
    ly = np.log10([p[1] for p in series])
    x0, x1 = lx.min() - 0.05, lx.max() + 0.05
    y0, y1 = ly.min() - 0.02, ly.max() + 0.02

    def px(u: float, v: float) -> tuple[float, float]:
        return (m + (u - x0) / (x1 - x0 + 1e-12) * (W - 2 * m), H - m - (v - y0) / (y1 - y0 + 1e-12) * (H - 2 * m))

    d.rectangle([m, m, W - m, H - m], outline="black")
    for u, v in zip(lx, ly):
        cx, cy = px(u, v)
        d.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=(30, 90, 200))
    us = np.linspace(x0, x1, 50)
    line = [px(u, math.log10(law.a) + law.b * u) for u in us]
    d.line(line, fill=(220, 60, 40), width=2)
    d.text((m, 12), title, fill="black")
    d.text((m, 28), f"L = {law.a:.3g} X^{law.b:.3f}, r = {law.pearson:.4f}", fill=(220, 60, 40))
    d.text((W // 2 - 40, H - m + 20), f"log10 {xlabel}", fill="black")
    d.text((6, H // 2), "log10 L", fill="black")
    for u in (x0, x1):
        d.text((px(u, y0)[0] - 12, H - m + 4), f"{u:.2f}", fill="black")
    for v in (y0, y1):
        d.text((4, px(x0, v)[1] - 6), f"{v:.3f}", fill="black")
    img.save(path)


def run_scaling(recipe: str, depths: list[int], width_per_depth: int, token_budget: int, test_data: str,
                out: Path, overrides: list[str], eval_limit: int | None = None) -> ScalingResult:
    from ..pipeline import VARPipeline
    from ..train.config import TrainConfig, load_config
    from ..train.generator import train
    from ..train.logging import read_metrics
    from ..train.runner import resolve_config_path
    from .tokens import run_token_eval

    if len(depths) < 2:
        raise ValueError("give at least two depths for a scaling fit")
    out.mkdir(parents=True, exist_ok=True)
    rungs = []
    for depth in depths:
        width = width_per_depth * depth
        heads = max(1, width // 64) if width >= 64 else 1
        base = load_config(TrainConfig, resolve_config_path(recipe), overrides)
        from ..config import named_transformer
        L = named_transformer(base.model.transformer).L
        steps = max(1, token_budget // (base.batch_size * L))
        cfg = load_config(TrainConfig, resolve_config_path(recipe), [
            *overrides, f"out_dir={out / f'd{depth}'}", f"schedule.steps={steps}", "schedule.epochs=0",
            f"model.arch={{depth: {depth}, embed_dim: {width}, num_heads: {heads}}}",
            "logging.sample_every=0", "logging.progress=false"])
        res = train(cfg)
        pipe = VARPipeline.from_pretrained(res.model_dir)
        params = sum(p.numel() for p in pipe.transformer.parameters())
        test = run_token_eval(pipe, test_data, limit=eval_limit, progress=False)
        tokens_per_step = cfg.batch_size * L
        curve = [(6.0 * params * r["step"] * tokens_per_step, float(r["loss"]))
                 for r in read_metrics(res.out_dir / "metrics.jsonl") if "loss" in r and r.get("step")]
        rungs.append(Rung(depth, width, params, steps, steps * tokens_per_step, test.loss_all, curve))
    n_law = fit_power_law([r.params for r in rungs], [r.test_loss for r in rungs])
    frontier = pareto_frontier([p for r in rungs for p in r.curve])
    c_law = fit_power_law([c for c, _ in frontier], [loss for _, loss in frontier])
    result = ScalingResult(rungs, n_law, c_law)
    plot_loglog(out / "loss_vs_params.png", [(r.params, r.test_loss) for r in rungs], n_law, "N (parameters)",
                "test loss vs model size")
    plot_loglog(out / "loss_vs_compute.png", frontier, c_law, "C (FLOPs)", "training loss frontier vs compute")
    (out / "scaling.json").write_text(json.dumps({"rungs": [asdict(r) for r in rungs], "n_law": asdict(n_law),
                                                  "c_law": asdict(c_law)}, indent=1) + "\n")
    return result


def cli_scaling(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="varclip scaling", description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe", help="a generator training recipe (YAML path or name in configs/)")
    ap.add_argument("--depths", default="2,3,4", help="comma list of depths (the ladder)")
    ap.add_argument("--width-per-depth", type=int, default=64, help="width = this x depth (VAR: 64)")
    ap.add_argument("--tokens", type=int, required=True, help="training token budget per model")
    ap.add_argument("--test-data", required=True, help="held-out image folder or caption manifest")
    ap.add_argument("--eval-limit", type=int, help="evaluate on a random subset of this many images")
    ap.add_argument("--out", default="out/scaling")
    ap.add_argument("overrides", nargs="*", help="recipe overrides key=value (e.g. data.manifest=...)")
    args = ap.parse_args(argv)
    try:
        depths = [int(d) for d in args.depths.split(",")]
    except ValueError:
        raise ValueError(f"--depths is a comma list of integers, got {args.depths!r}") from None
    res = run_scaling(args.recipe, depths, args.width_per_depth, args.tokens, args.test_data, Path(args.out),
                      args.overrides, args.eval_limit)
    print(res.table())
    print(f"plots: {Path(args.out) / 'loss_vs_params.png'}, {Path(args.out) / 'loss_vs_compute.png'}")
    return 0
