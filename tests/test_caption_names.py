"""The shipped ImageNet class-name list and the class-name helpers."""

from __future__ import annotations

import json

import pytest

from varclip.caption import names
from varclip.caption.names import (
    find_name,
    humanize,
    imagenet_class,
    imagenet_classes,
    indefinite_article,
    load_class_names,
    resolve_class,
    words,
)
from varclip.caption.wordnet_build import READABLE_NAMES, build_rows, read_wnids


def test_imagenet_list_has_the_1000_classes_in_class_id_order():
    classes = imagenet_classes()
    wnids = [c.folder for c in classes]
    assert len(classes) == 1000 and len(set(wnids)) == 1000
    assert wnids == sorted(wnids)  # the sorted synsets define the class ids
    assert all(names.is_wnid(w) for w in wnids)
    # a few well-known ids
    assert classes[0].folder == "n01440764" and classes[0].name == "tench"
    assert classes[1].name == "goldfish"
    assert classes[207].name == "golden retriever"
    assert classes[281].name == "tabby"
    assert classes[340].name == "zebra"
    assert classes[999].folder == "n15075141" and classes[999].name == "toilet tissue"
    readable = [c.name.lower() for c in classes]
    assert len(set(readable)) == 1000  # template captions tell every class apart
    assert all(c.synonyms and c.name for c in classes)


def test_duplicate_wordnet_lemmas_get_distinct_readable_names():
    assert imagenet_class("n02012849").name == "crane bird"
    assert imagenet_class("n03126707").name == "construction crane"
    assert "crane" in imagenet_class("n03126707").synonyms
    assert imagenet_class("n02113186").name == "Cardigan Welsh corgi"
    assert imagenet_class("n02963159").name == "cardigan"
    assert imagenet_class("n01484850").all_names[:3] == ("great white shark", "white shark",
                                                         "man-eater")
    assert imagenet_class("n99999999") is None


def test_the_shipped_file_is_what_the_builder_checks():
    text = names.TSV_PATH.read_text(encoding="utf-8")
    assert "WordNet 3.0 Copyright 2006 by Princeton University" in text  # the licence travels
    wnids = read_wnids(names.TSV_PATH)
    lemmas = {c.folder: list(c.synonyms) for c in imagenet_classes()}
    rows = build_rows(wnids, lemmas)  # unique readable names, 1000 sorted synsets
    assert [(w, n) for w, n, _ in rows] == [(c.folder, c.name) for c in imagenet_classes()]
    assert set(READABLE_NAMES) <= set(wnids)
    with pytest.raises(ValueError, match="1000"):
        build_rows(wnids[:10], lemmas)


@pytest.mark.parametrize("name,article", [
    ("tench", "a"), ("otter", "an"), ("iPod", "an"), ("umbrella", "an"), ("unicycle", "a"),
    ("European fire salamander", "a"), ("hourglass", "an"), ("CD player", "a"),
    ("MRI scanner", "an"), ("one-armed bandit", "a"), ("upright piano", "an"),
])
def test_indefinite_article(name, article):
    assert indefinite_article(name) == article


def test_resolve_class_and_humanize():
    assert resolve_class("n01443537").name == "goldfish"
    assert resolve_class("golden_retriever").name == "golden retriever"
    assert resolve_class("sea-lion").name == "sea lion"
    assert humanize("001.Black_footed_Albatross") == "Black footed Albatross"
    override = {"n01443537": names.ClassName("n01443537", "gold fish")}
    assert resolve_class("n01443537", override).name == "gold fish"


def test_load_class_names_json_tsv_csv(tmp_path):
    j = tmp_path / "names.json"
    j.write_text(json.dumps({"cls_a": "red panda", "cls_b": ["kitty", "cat", "kitten"]}))
    got = load_class_names(j)
    assert got["cls_a"].name == "red panda" and got["cls_b"].synonyms == ("cat", "kitten")
    t = tmp_path / "names.tsv"
    t.write_text("# folder\tname\ncls_a\tred panda\tlesser panda, cat bear\n\ncls_b\tcat\n")
    got = load_class_names(t)
    assert got["cls_a"].synonyms == ("lesser panda", "cat bear") and got["cls_b"].name == "cat"
    c = tmp_path / "names.csv"
    c.write_text("cls_a,red panda\n")
    assert load_class_names(c)["cls_a"].name == "red panda"
    bad = tmp_path / "bad.csv"
    bad.write_text("cls_a\n")
    with pytest.raises(ValueError, match="line 1"):
        load_class_names(bad)


def test_find_name_whole_words_plurals_and_position():
    assert find_name(words("Two goldfishes in a bowl"), ["goldfish"]) == 1
    assert find_name(words("a great white shark swimming"), ["white shark", "shark"]) == 2
    assert find_name(words("a great white shark"), ["shark", "great white shark"]) == 1
    assert find_name(words("some puppies playing"), ["puppy"]) == 1
    assert find_name(words("a catalog on a table"), ["cat"]) is None  # whole words only
    assert find_name(words("a man-eater"), ["man-eater"]) == 1
    assert find_name([], ["cat"]) is None
