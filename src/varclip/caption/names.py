"""Readable class names: ImageNet synsets (n01440764 -> "tench") and any other class folder.

The ImageNet-1k list ships as `imagenet_classes.tsv` (wnid, readable name, WordNet lemmas;
see `wordnet_build.py` for how it is generated). Folders that are not ImageNet synsets
get their own name made readable ("golden_retriever" -> "golden retriever"), and a
user file can override anything (`load_class_names`).
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TSV_PATH = Path(__file__).with_name("imagenet_classes.tsv")
_WNID = re.compile(r"^n\d{8}$")
_WORD = re.compile(r"[a-z0-9]+(?:['’-][a-z0-9]+)*")


@dataclass(frozen=True)
class ClassName:
    """One class: its folder name, the name used in captions, and every synonym."""

    folder: str
    name: str
    synonyms: tuple[str, ...] = ()

    @property
    def all_names(self) -> tuple[str, ...]:
        """`name` first, then the synonyms, without case-insensitive repeats."""
        seen: dict[str, str] = {}
        for n in (self.name, *self.synonyms):
            seen.setdefault(n.lower(), n)
        return tuple(seen.values())


def is_wnid(text: str) -> bool:
    return bool(_WNID.match(text))


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[ClassName, ...]:
    """The 1000 ImageNet-1k classes in class-id order (sorted synsets)."""
    rows = []
    for line in TSV_PATH.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        wnid, name, synonyms = line.split("\t")
        rows.append(ClassName(wnid, name, tuple(s.strip() for s in synonyms.split(","))))
    return tuple(rows)


@lru_cache(maxsize=1)
def _imagenet_by_wnid() -> dict[str, ClassName]:
    return {c.folder: c for c in imagenet_classes()}


def imagenet_class(wnid: str) -> ClassName | None:
    """The ImageNet-1k class of a synset id, or None if it is not one of the 1000."""
    return _imagenet_by_wnid().get(wnid)


def humanize(folder: str) -> str:
    """'golden_retriever' / 'golden-retriever' -> 'golden retriever'; a leading '123.' dropped."""
    text = re.sub(r"^\d+[._ -]+(?=\D)", "", folder)  # CUB-style "001.Black_footed_Albatross"
    text = re.sub(r"[_\s]+", " ", text).strip()
    if "-" in text and " " not in text:
        text = text.replace("-", " ")
    return text or folder


def load_class_names(path: str | os.PathLike[str]) -> dict[str, ClassName]:
    """A user's folder -> name mapping: JSON {"folder": "name" or ["name", "synonym", ...]},
    or lines `folder<TAB>name[<TAB>synonym, synonym]` / CSV `folder,name` ('#' comments)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    out: dict[str, ClassName] = {}
    if path.suffix.lower() == ".json":
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object mapping folder -> name")
        for folder, value in data.items():
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                raise ValueError(f"{path}: the name of {folder!r} must be a string or a list of strings")
            out[str(folder)] = ClassName(str(folder), names[0].strip(), tuple(n.strip() for n in names[1:]))
        return out
    delimiter = "\t" if "\t" in text else ","
    for number, row in enumerate(csv.reader(text.splitlines(), delimiter=delimiter), start=1):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 2 or not row[1].strip():
            raise ValueError(f"{path}: line {number}: expected 'folder{delimiter}name'")
        folder, name = row[0].strip(), row[1].strip()
        synonyms = tuple(s.strip() for s in ",".join(row[2:]).split(",") if s.strip())
        out[folder] = ClassName(folder, name, synonyms)
    return out


def resolve_class(folder: str, overrides: dict[str, ClassName] | None = None) -> ClassName:
    """A class folder's name: user overrides, then ImageNet synsets, then the folder itself."""
    if overrides and folder in overrides:
        return overrides[folder]
    found = imagenet_class(folder)
    if found is not None:
        return found
    return ClassName(folder, humanize(folder))


_AN_EXCEPTIONS = ("eu", "uni", "use", "usu", "uti", "ure", "one", "once", "ubi", "uga", "uk")
_A_EXCEPTIONS = ("hour", "honest", "honor", "honour", "heir")


def indefinite_article(name: str) -> str:
    """'a' or 'an' for a noun phrase, by its first sound (a heuristic good for class names)."""
    word = name.strip().lower()
    if not word:
        return "a"
    if word.startswith(_A_EXCEPTIONS):
        return "an"
    if word.startswith(_AN_EXCEPTIONS):
        return "a"
    first = name.strip().split()[0]
    if len(first) > 1 and first.isalpha() and first.isupper():
        # an acronym is read letter by letter: "an MRI scanner", "a CD player"
        return "an" if first[0] in "AEFHILMNORSX" else "a"
    return "an" if word[0] in "aeiou" else "a"


def words(text: str) -> list[str]:
    """Lower-case word tokens (letters/digits, inner apostrophes and hyphens kept)."""
    return _WORD.findall(text.lower())


def find_name(caption_words: list[str], names: tuple[str, ...] | list[str]) -> int | None:
    """Word index of the first occurrence of any name (as a whole-word phrase), else None.

    A trailing plural 's'/'es' on the last word counts ("goldfish" matches "goldfishes",
    "tench" matches "tenches").
    """
    best: int | None = None
    for name in names:
        target = words(name)
        if not target:
            continue
        n = len(target)
        for i in range(len(caption_words) - n + 1):
            if best is not None and i >= best:
                break
            window = caption_words[i:i + n]
            if window[:-1] != target[:-1]:
                continue
            last, want = window[-1], target[-1]
            if last == want or last in (want + "s", want + "es") or (
                    want.endswith("y") and last == want[:-1] + "ies"):
                best = i
                break
    return best
