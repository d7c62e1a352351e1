"""`python -m varclip.caption IMAGES_DIR --out captions.jsonl ...` (what torchrun launches)."""

import sys

from .cli import cli_caption

sys.exit(cli_caption(sys.argv[1:]))
