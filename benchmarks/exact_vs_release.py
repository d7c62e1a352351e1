"""Exact mode of this tree against a previous release, interleaved, same weights, same tokens.

    python benchmarks/exact_vs_release.py [--release d59ca1a] [--repeats 3] [--cli-repeats 2]

The release is checked out with `git worktree add` into a temporary directory and imported
in this process as `varclip_release`, so both sides share the CPU state and every timing pair
is taken back to back (the order alternates per repeat). Both sides get the same random d16
weights; the script asserts that they draw the same tokens and produce the same bits (logits,
images, gradients), then prints min-of-repeats times and release/current ratios (> 1: this
tree is faster). The CLI rows run whole `varclip generate` processes on official-layout .pth
files written to the temporary directory.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch

import varclip
from varclip.checkpoints import save_official, tokenizer_to_official, transformer_to_official
from varclip.config import SamplingConfig, TokenizerConfig, named_transformer

ROOT = Path(__file__).resolve().parents[1]
CLASSES = [207, 88]


def import_release(src: Path, name: str = "varclip_release") -> ModuleType:
    """The package under `src` imported as `name` (its relative imports resolve inside it)."""
    spec = importlib.util.spec_from_file_location(name, src / "varclip" / "__init__.py",
                                                  submodule_search_locations=[str(src / "varclip")])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def sub(pkg: ModuleType, name: str) -> ModuleType:
    return importlib.import_module(f"{pkg.__name__}.{name}")


class Side:
    """One version: its modules and a copy of the shared random weights."""

    def __init__(self, pkg: ModuleType, state: dict, tok_state: dict):
        self.pkg = pkg
        cfg = sub(pkg, "config")
        self.model = sub(pkg, "model.transformer").VARTransformer(cfg.named_transformer("d16")).eval()
        self.model.load_state_dict(state)
        self.tok = sub(pkg, "tokenizer").VQTokenizer(cfg.TokenizerConfig()).eval()
        self.tok.load_state_dict(tok_state)
        self.Cond = sub(pkg, "model.conditioning").Cond
        self.sampling = sub(pkg, "sampling")
        self.SamplingConfig = cfg.SamplingConfig

    def sample(self, batch: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        cond = self.Cond(torch.tensor(CLASSES[:batch]))
        sc = self.SamplingConfig(cfg=4.0, top_k=900, top_p=0.95, seed=0)
        img, ids, _ = self.sampling.generate(self.model, self.tok, cond, batch, sc)
        return img, ids

    @torch.inference_mode()
    def decode(self, f_hat: torch.Tensor) -> torch.Tensor:
        return self.tok.fhat_to_img(f_hat)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.Cond(torch.tensor(CLASSES)), x)

    def train_step(self, x: torch.Tensor) -> torch.Tensor:
        self.model.train()
        torch.manual_seed(0)  # the same drop-path draws on both sides
        try:
            self.model(self.Cond(torch.tensor(CLASSES)), x).square().mean().backward()
            grad = self.model.blocks[0].attn.mat_qkv.weight.grad.clone()
            self.model.zero_grad(set_to_none=True)
        finally:
            self.model.eval()
        return grad


CLOCK = time.perf_counter  # --clock cpu: time.process_time (CPU seconds, less sensitive to other jobs)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = CLOCK()
    out = fn()
    return CLOCK() - t, out


def same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def interleave(rows: dict[str, tuple[Callable, Callable]], repeats: int) -> dict[str, tuple[float, float]]:
    """min time per side over `repeats` back-to-back pairs (after one warm-up pair); checks bits."""
    out = {}
    for name, (cur, rel) in rows.items():
        a, b = cur(), rel()  # warm-up, and the exactness check
        if not same(a, b):
            raise SystemExit(f"{name}: this tree and the release disagree (exact mode must be bit-identical)")
        tc, tr = [], []
        for r in range(repeats):
            order = ((tc, cur), (tr, rel)) if r % 2 == 0 else ((tr, rel), (tc, cur))
            for acc, fn in order:
                acc.append(timed(fn)[0])
        out[name] = (min(tc), min(tr))
        print(f"  {name}: this tree {min(tc):.3f} s, release {min(tr):.3f} s", flush=True)
    return out


def run_cli(src: Path, args: list[str], out: Path, code: str | None = None) -> tuple[float, str]:
    """One process (the CLI with its default progress bar, or `code`) writing PNGs into `out`:
    (time, digest of the PNGs). Single images, not a grid: grid captions are not the model's."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "varclip.cli", "generate", *args,
                                                     "--out", f"{out}{os.sep}"]
    t, c = time.perf_counter(), _children_cpu()
    subprocess.run(cmd, check=True, env=env, cwd=out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spent = _children_cpu() - c if CLOCK is time.process_time else time.perf_counter() - t
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(out.iterdir()))).hexdigest()
    return spent, digest


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--release", default="d59ca1a", help="git commit of the release to compare with")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cli-repeats", type=int, default=2, help="rounds of the whole-process CLI rows (0 = skip)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: CPU seconds of this process (with --threads 1, robust on a shared machine)")
    p.add_argument("--rows", default="", help="';'-separated row-name prefixes to run (default: all)")
    args = p.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the CLI processes too
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rel_tree = tmp / "release"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(rel_tree), args.release],
                       check=True, capture_output=True)
        try:
            return bench(args, tmp, rel_tree / "src")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(rel_tree)],
                           capture_output=True)


def bench(args: argparse.Namespace, tmp: Path, rel_src: Path) -> int:
    release = import_release(rel_src)
    cur_model = sub(varclip, "model.transformer").VARTransformer(named_transformer("d16")).eval()
    cur_tok = sub(varclip, "tokenizer").VQTokenizer(TokenizerConfig()).eval()
    state, tok_state = cur_model.state_dict(), cur_tok.state_dict()
    cur, rel = Side(varclip, state, tok_state), Side(release, state, tok_state)
    del cur_model, cur_tok
    print(f"d16 random weights, CPU, {torch.get_num_threads()} threads, {args.clock} clock, release {args.release}",
          flush=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, cur.model.L - 1, cur.model.cfg.z_channels, generator=g)
    f_hat = torch.randn(2, cur.model.cfg.z_channels, 16, 16, generator=g)
    rows = {
        "sampling + decode, B=1": (lambda: cur.sample(1), lambda: rel.sample(1)),
        "sampling + decode, B=2": (lambda: cur.sample(2), lambda: rel.sample(2)),
        "VQVAE decode, B=1": (lambda: cur.decode(f_hat[:1]), lambda: rel.decode(f_hat[:1])),
        "VQVAE decode, B=2": (lambda: cur.decode(f_hat), lambda: rel.decode(f_hat)),
        "teacher-forcing forward, B=2": (lambda: cur.forward(x), lambda: rel.forward(x)),
        "forward + backward, B=2": (lambda: cur.train_step(x), lambda: rel.train_step(x)),
    }
    if args.rows:
        rows = {k: v for k, v in rows.items() if k.startswith(tuple(args.rows.split(";")))}
    results = interleave(rows, args.repeats)
    lib = cli_rows(cur, tmp, rel_src, args.cli_repeats, results) if args.cli_repeats > 0 else None
    print("\n| d16, fp32, CPU | this tree (s) | release (s) | release / this tree |\n|---|---|---|---|")
    for name, (tc, tr) in results.items():
        print(f"| {name} | {tc:.2f} | {tr:.2f} | {tr / tc:.2f} |")
    if lib is not None:
        tc, tl = lib
        print(f"\nthis tree, whole process: varclip generate {tc:.2f} s, the library call that decodes once "
              f"{tl:.2f} s (library / CLI {tl / tc:.2f})")
    return 0


def cli_rows(cur: Side, tmp: Path, rel_src: Path, repeats: int, results: dict[str, tuple[float, float]]
             ) -> tuple[float, float]:
    """Whole processes on official-layout files: `varclip generate` of both versions (added to
    `results`), and this tree's library call that decodes once (load + sample + decode, same
    process start-up): returns (CLI, library) times of this tree."""
    var, vae = tmp / "var_d16.pth", tmp / "vae.pth"
    save_official(transformer_to_official(cur.model), var)
    save_official(tokenizer_to_official(cur.tok), vae)
    cli = ["--model", str(var), "--vae", str(vae), "--class", str(CLASSES[0]), "--n", "2", "--seed", "0"]
    src = Path(varclip.__file__).resolve().parents[1]
    lib = (f"from varclip.pipeline import VARPipeline\n"
           f"pipe = VARPipeline.from_pretrained({str(var)!r}, vae={str(vae)!r})\n"
           f"for i, im in enumerate(pipe(class_labels=[{CLASSES[0]}], num_images=2, seed=0).images):\n"
           f"    im.save(f'{{i:05d}}.png')\n")
    times: dict[str, list[float]] = {"cur": [], "rel": [], "lib": []}
    hashes = {}
    for r in range(repeats):
        order = ["cur", "rel", "lib"] if r % 2 == 0 else ["lib", "rel", "cur"]
        for who in order:
            if who == "lib":
                t, h = run_cli(src, [], tmp / "lib", lib)
            else:
                t, h = run_cli(src if who == "cur" else rel_src, cli, tmp / who)
            times[who].append(t)
            hashes.setdefault(who, h)
            if hashes[who] != h:
                raise SystemExit(f"{who}: two runs of the same command wrote different images")
        print(f"  CLI round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)
    if hashes["cur"] != hashes["rel"]:
        raise SystemExit("varclip generate writes a different PNG than the release for the same seed")
    best = {k: min(v) for k, v in times.items()}
    results["varclip generate --class 207 --n 2 (whole process)"] = (best["cur"], best["rel"])
    return best["cur"], best["lib"]


if __name__ == "__main__":
    sys.exit(main())
