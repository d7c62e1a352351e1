"""Data loading for VAR / VAR-CLIP: images, class folders, caption manifests, tar shards,
a resumable distributed sampler, and the embedded OpenMoji demo data set builder."""

from .base import RobustImageDataset
from .captions import (
    CaptionDataset,
    Manifest,
    ManifestProblem,
    detect_format,
    read_caption_manifest,
    split_caption_line,
    write_jsonl_manifest,
)
from .emoji import EmojiBuildSummary, build_emoji_dataset, cli_data
from .folders import ImageFolderDataset
from .images import (
    IMAGE_EXTENSIONS,
    ImageTransform,
    decode_image_bytes,
    load_image,
    pil_to_tensor,
    tensor_to_pil,
    to_rgb,
)
from .sampler import DistributedResumableSampler
from .shards import ShardDataset, ShardWriter, expand_shards, write_shards

__all__ = [
    "CaptionDataset", "DistributedResumableSampler", "EmojiBuildSummary", "IMAGE_EXTENSIONS",
    "ImageFolderDataset", "ImageTransform", "Manifest", "ManifestProblem", "RobustImageDataset",
    "ShardDataset", "ShardWriter", "build_emoji_dataset", "cli_data", "decode_image_bytes",
    "detect_format", "expand_shards", "load_image", "pil_to_tensor", "read_caption_manifest",
    "split_caption_line", "tensor_to_pil", "to_rgb", "write_jsonl_manifest", "write_shards",
]
