"""`python -m varclip.train CONFIG [...]` (what torchrun launches) and `python -m varclip.train cache CONFIG`.

    torchrun --nproc_per_node 8 -m varclip.train configs/var_d16.yaml data.root=/data/imagenet/train
"""

from __future__ import annotations

import sys

from ..errors import run_cli


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = "train"
    if argv and argv[0] in ("train", "cache"):
        command, argv = argv[0], argv[1:]
    if command == "cache":
        from .cache import cli_cache as run
    else:
        from .generator import cli_train as run
    return run_cli(run, argv, f"varclip {command}")


if __name__ == "__main__":
    sys.exit(main())
