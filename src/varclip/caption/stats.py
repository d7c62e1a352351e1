"""Statistics of a caption set: lengths, vocabulary, duplicates, class-name mentions.

VAR-CLIP's BLIP-2 captions of ImageNet average about 8 words, are generic and often do
not name the class; the paper also finds that early words dominate the pooled CLIP
embedding. These numbers show how a caption set compares: how long, how varied, how
often and how early the image's class is named.

The class of an image comes from its path: the nearest ImageNet synset folder
(n01440764 -> tench and its WordNet synonyms), else its parent folder when the set has
more than one folder. A mention is the name or any synonym as whole words (a plural 's'
allowed); the 'head noun' rate only asks for the last word of the readable name
("shark" for "great white shark").
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..data.captions import read_caption_manifest
from .names import ClassName, find_name, is_wnid, resolve_class, words

STOPWORDS = frozenset(
    "a an the of in on at to with and or is are was were be it its this that there these those "
    "some two three for from by as his her their our your my up down out over under near next "
    "while into onto front top side his he she they them has have having".split())
_HIST_CAP = 30


def _class_folder(path: Path, root: Path) -> tuple[str | None, str | None]:
    """(nearest synset folder, parent folder name) of an image path."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = path.parts
    folders = parts[:-1]
    synset = next((p for p in reversed(folders) if is_wnid(p)), None)
    return synset, (folders[-1] if folders else None)


def caption_stats(manifest: str | os.PathLike[str],
                  class_names: dict[str, ClassName] | None = None, top: int = 15) -> dict[str, Any]:
    """All statistics as a JSON-ready dict (see `format_stats` for the text report)."""
    parsed = read_caption_manifest(manifest, check_files=False)
    records = parsed.records
    if not records:
        raise ValueError(f"{manifest}: no usable captions ({parsed.summary()})")
    tokenised = [words(caption) for _, caption in records]
    lengths = np.array([len(t) for t in tokenised], dtype=np.int64)
    chars = np.array([len(caption) for _, caption in records], dtype=np.int64)
    n = len(records)

    hist = Counter(min(int(x), _HIST_CAP) for x in lengths)
    length = {
        "mean": float(lengths.mean()), "std": float(lengths.std()),
        "min": int(lengths.min()), "max": int(lengths.max()),
        **{f"p{q}": float(np.percentile(lengths, q)) for q in (5, 25, 50, 75, 95)},
        "mean_chars": float(chars.mean()),
        "histogram": {(f"{k}+" if k == _HIST_CAP else str(k)): hist[k] for k in sorted(hist)},
    }

    counts = Counter(w for t in tokenised for w in t)
    content = Counter({w: c for w, c in counts.items() if w not in STOPWORDS})
    vocabulary = {
        "words": int(lengths.sum()), "distinct": len(counts),
        "seen_once": sum(1 for c in counts.values() if c == 1),
        "top": counts.most_common(top), "top_content": content.most_common(top),
    }

    normal = Counter(" ".join(t) for t in tokenised)
    repeated = {c: k for c, k in normal.items() if k > 1}
    duplicates = {
        "distinct_captions": len(normal),
        "duplicate_rate": 1.0 - len(normal) / n,          # captions repeating an earlier one
        "shared_rate": sum(repeated.values()) / n,          # captions not unique to one image
        "most_repeated": normal.most_common(min(top, len(repeated))),
    }

    root = parsed.root
    folders = [_class_folder(path, root) for path, _ in records]
    use_parent = len({parent for _, parent in folders}) > 1
    resolved: dict[str, ClassName] = {}
    with_class = mentioned = early = head_mentioned = 0
    positions: list[int] = []
    per_class: dict[str, list[int]] = {}
    for (synset, parent), caption_words in zip(folders, tokenised):
        folder = synset or (parent if use_parent else None)
        if folder is None:
            continue
        cls = resolved.get(folder) or resolved.setdefault(folder, resolve_class(folder, class_names))
        with_class += 1
        pos = find_name(caption_words, cls.all_names)
        head = words(cls.name)[-1:] or [""]
        tally = per_class.setdefault(folder, [0, 0])
        tally[0] += 1
        if pos is not None:
            mentioned += 1
            positions.append(pos)
            early += pos < 3
            tally[1] += 1
        if pos is not None or find_name(caption_words, head) is not None:
            head_mentioned += 1
    class_mentions: dict[str, Any] = {"images_with_class": with_class}
    if with_class:
        least = sorted(per_class.items(), key=lambda kv: (kv[1][1] / kv[1][0], -kv[1][0], kv[0]))
        class_mentions.update({
            "classes": len(per_class),
            "name_rate": mentioned / with_class,
            "head_noun_rate": head_mentioned / with_class,
            "in_first_3_words_rate": early / with_class,
            "mean_first_position": float(np.mean(positions)) if positions else None,
            "least_named": [{"folder": f, "name": resolved[f].name, "images": c[0],
                             "name_rate": c[1] / c[0]} for f, c in least[:top]],
        })
    return {"manifest": str(manifest), "captions": n, "unusable_lines": len(parsed.problems),
            "length_words": length, "vocabulary": vocabulary, "duplicates": duplicates,
            "class_mentions": class_mentions}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def format_stats(stats: dict[str, Any]) -> str:
    """The text report of `caption_stats`."""
    ln, voc, dup, cm = (stats["length_words"], stats["vocabulary"], stats["duplicates"],
                        stats["class_mentions"])
    out = [f"{stats['manifest']}: {stats['captions']} captions"
           + (f" ({stats['unusable_lines']} unusable lines skipped)" if stats["unusable_lines"] else "")]
    out.append(f"length (words): mean {ln['mean']:.2f}, std {ln['std']:.2f}, min {ln['min']}, "
               f"p5 {ln['p5']:g}, p25 {ln['p25']:g}, median {ln['p50']:g}, p75 {ln['p75']:g}, "
               f"p95 {ln['p95']:g}, max {ln['max']}; mean {ln['mean_chars']:.1f} characters")
    peak = max(ln["histogram"].values())
    for words_, count in ln["histogram"].items():
        bar = "#" * max(1, round(40 * count / peak)) if count else ""
        out.append(f"  {words_:>4} words {count:>9} {_pct(count / stats['captions']):>6} {bar}")
    out.append(f"vocabulary: {voc['distinct']} distinct words in {voc['words']} "
               f"({voc['seen_once']} seen once)")
    out.append("  top words: " + ", ".join(f"{w} {c}" for w, c in voc["top"]))
    out.append("  top content words: " + ", ".join(f"{w} {c}" for w, c in voc["top_content"]))
    out.append(f"duplicates: {dup['distinct_captions']} distinct captions; duplicate rate "
               f"{_pct(dup['duplicate_rate'])} (repeats of an earlier caption), "
               f"{_pct(dup['shared_rate'])} of images share their caption")
    for caption, count in dup["most_repeated"]:
        out.append(f"  {count:>7} x {caption!r}")
    if cm["images_with_class"]:
        first = cm["mean_first_position"]
        out.append(f"class name: {cm['images_with_class']} images in {cm['classes']} classes; named "
                   f"in {_pct(cm['name_rate'])} (head noun {_pct(cm['head_noun_rate'])}), in the "
                   f"first 3 words in {_pct(cm['in_first_3_words_rate'])}"
                   + (f"; first mention at word {first:.2f} on average" if first is not None else ""))
        least = ", ".join(f"{c['name']} ({c['folder']}) {_pct(c['name_rate'])}"
                          for c in cm["least_named"])
        out.append(f"  least named: {least}")
    else:
        out.append("class name: no class folders in the image paths")
    return "\n".join(out)

