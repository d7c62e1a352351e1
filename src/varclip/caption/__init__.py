"""Caption sets for VAR-CLIP training: a local BLIP-2/BLIP captioner or a no-model template,
a resumable, shardable captioning loop that writes JSONL manifests (and VAR-CLIP's
`image_captions.txt`), and caption-set statistics.

Command line: `varclip caption` (`cli_caption`) and `varclip caption-stats`
(`cli_caption_stats`); `python -m varclip.caption` runs `cli_caption` (for torchrun).
"""

from .captioners import (
    DEFAULT_TEMPLATE,
    Captioner,
    HFCaptioner,
    TemplateCaptioner,
    make_captioner,
)
from .cli import cli_caption, cli_caption_stats
from .names import (
    ClassName,
    imagenet_class,
    imagenet_classes,
    indefinite_article,
    load_class_names,
    resolve_class,
)
from .run import (
    CaptionSummary,
    MergeSummary,
    caption_images,
    list_images,
    merge_shards,
    shard_path,
    write_varclip_txt,
)
from .stats import caption_stats, format_stats

Blip2Captioner = HFCaptioner  # the BLIP-2 (and BLIP) captioner

__all__ = [
    "Blip2Captioner", "CaptionSummary", "Captioner", "ClassName", "DEFAULT_TEMPLATE",
    "HFCaptioner", "MergeSummary", "TemplateCaptioner", "caption_images", "caption_stats",
    "cli_caption", "cli_caption_stats", "format_stats", "imagenet_class", "imagenet_classes",
    "indefinite_article", "list_images", "load_class_names", "make_captioner", "merge_shards",
    "resolve_class", "shard_path", "write_varclip_txt",
]
