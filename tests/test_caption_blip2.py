"""Model captioning with a tiny, randomly initialised BLIP-2 (and BLIP) built from configs
and saved to disk, then loaded through the same code path as real checkpoints: batching,
prompts, beam search, resume after SIGKILL, sharding across ranks and torchrun + merge.

Random weights give gibberish captions; what is checked is the bookkeeping and that a
caption does not depend on the batch it was computed in.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from varclip.caption import (  # noqa: E402
    HFCaptioner,
    caption_images,
    cli_caption,
    make_captioner,
    merge_shards,
    shard_path,
)
from varclip.caption.run import read_rows, shard_files  # noqa: E402
from varclip.data import read_caption_manifest  # noqa: E402

WORDS = ("a photo of the dog cat fish bird car tree man woman sitting standing on grass with "
         "red blue small big and in water near house picture").split()
NUM_QUERY = 4
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _word_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<s>": 2, "<unk>": 3}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")
    fast.add_tokens(["<image>"], special_tokens=True)
    return fast


def special_ids() -> list[int]:
    """Token ids other than words and end-of-text: random weights may well pick them, which
    decodes to an empty caption (recorded as a failure); the tests suppress them."""
    tok = _word_tokenizer()
    return [tok.convert_tokens_to_ids(t) for t in ("<pad>", "<s>", "<unk>", "<image>")]


def suppress_args() -> list[str]:
    return ["--generate", f"suppress_tokens={json.dumps(special_ids())}"]


def build_tiny_blip2(path: Path, legacy: bool = False, language_model: str = "opt") -> Path:
    """A BLIP-2 (ViT + Q-Former + OPT or T5) of a few thousand random weights, saved as a
    user's checkpoint directory. `legacy`: as saved before BLIP-2 had image tokens."""
    import torch
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessor,
        OPTConfig,
        T5Config,
    )

    tok = _word_tokenizer()
    image_id = tok.convert_tokens_to_ids("<image>")
    if language_model == "opt":
        text = OPTConfig(vocab_size=len(tok), hidden_size=16, ffn_dim=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=128,
                         word_embed_proj_dim=16, pad_token_id=0, bos_token_id=2, eos_token_id=1)
    else:  # the Flan-T5 variants: an encoder-decoder that does not echo the prompt
        text = T5Config(vocab_size=len(tok), d_model=16, d_kv=8, d_ff=32, num_layers=1,
                        num_decoder_layers=1, num_heads=2, pad_token_id=0, eos_token_id=1,
                        decoder_start_token_id=0)
    config = Blip2Config(
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, image_size=32, patch_size=8),
        qformer_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                            num_attention_heads=2, vocab_size=len(tok),
                            max_position_embeddings=64),
        text_config=text.to_dict(), num_query_tokens=NUM_QUERY, image_token_index=image_id)
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(config).eval()
    processor = Blip2Processor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                               tokenizer=tok, num_query_tokens=NUM_QUERY)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    if legacy:
        cfg = json.loads((path / "config.json").read_text())
        cfg.pop("image_token_index", None)
        cfg.pop("image_token_id", None)
        (path / "config.json").write_text(json.dumps(cfg))
        for name in ("processor_config.json", "preprocessor_config.json"):
            f = path / name
            if f.exists():
                data = json.loads(f.read_text())
                data.pop("num_query_tokens", None)
                f.write_text(json.dumps(data))
    return path


def make_images(root: Path, layout: dict[str, int], seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for cls, count in layout.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            h, w = rng.integers(20, 48, size=2)
            p = root / cls / f"{i:03d}.png"
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
            paths.append(p)
    return paths


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(scope="module")
def blip2_dir(tmp_path_factory) -> Path:
    return build_tiny_blip2(tmp_path_factory.mktemp("blip2"))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "train"
    make_images(root, {"n01440764": 4, "n01443537": 3})
    return root


@pytest.fixture(autouse=True)
def _no_torchrun_env(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["HF_HUB_OFFLINE"] = "1"
    return env


def test_batched_captions_equal_one_by_one(blip2_dir, images):
    cap = make_captioner(f"blip2:{blip2_dir}", device="cpu", max_new_tokens=6)
    assert isinstance(cap, HFCaptioner) and cap.kind == "blip2" and cap.device == "cpu"
    assert cap.describe()["num_beams"] == 1
    pics = [Image.open(p).convert("RGB") for p in sorted(images.rglob("*.png"))]
    batched = cap.caption(pics)
    single = [cap.caption([p])[0] for p in pics]
    assert batched == single and len(batched) == 7
    assert all(isinstance(c, str) and c == " ".join(c.split()) for c in batched)
    assert all(w in WORDS for c in batched for w in c.split())  # image tokens never leak out
    assert cap.caption([]) == []


def test_prompt_is_removed_unless_kept_and_beam_search_runs(blip2_dir, images):
    pics = [Image.open(p).convert("RGB") for p in sorted(images.rglob("*.png"))[:3]]
    kept = make_captioner(f"blip2:{blip2_dir}", device="cpu", prompt="a photo of",
                          keep_prompt=True, max_new_tokens=5).caption(pics)
    cut = make_captioner(f"blip2:{blip2_dir}", device="cpu", prompt="a photo of",
                         max_new_tokens=5).caption(pics)
    assert all(k.startswith("a photo of") for k in kept)
    assert [" ".join(("a photo of " + c).split()) for c in cut] == kept
    beams = make_captioner(f"hf:{blip2_dir}", device="cpu", num_beams=3, max_new_tokens=4,
                           min_new_tokens=2, generate_kwargs={"length_penalty": 1.0})
    out = beams.caption(pics)
    assert len(out) == 3 and all(1 <= len(c.split()) <= 4 for c in out)
    assert beams.describe()["num_beams"] == 3


def test_legacy_checkpoint_without_image_tokens_gives_the_same_captions(blip2_dir, images,
                                                                          tmp_path):
    legacy = build_tiny_blip2(tmp_path / "legacy", legacy=True)
    pics = [Image.open(p).convert("RGB") for p in sorted(images.rglob("*.png"))[:3]]
    new = make_captioner(f"blip2:{blip2_dir}", device="cpu", max_new_tokens=5).caption(pics)
    old = make_captioner(f"blip2:{legacy}", device="cpu", max_new_tokens=5)
    assert old.processor.num_query_tokens == NUM_QUERY
    assert old.caption(pics) == new


def test_blip2_with_a_t5_language_model(tmp_path, images):
    path = build_tiny_blip2(tmp_path / "t5", language_model="t5")
    pics = [Image.open(p).convert("RGB") for p in sorted(images.rglob("*.png"))[:3]]
    cap = make_captioner(f"blip2:{path}", device="cpu", max_new_tokens=4, min_new_tokens=1,
                         generate_kwargs={"suppress_tokens": special_ids()})
    batched = cap.caption(pics)
    assert batched == [cap.caption([p])[0] for p in pics]
    assert all(1 <= len(c.split()) <= 4 and all(w in WORDS for w in c.split()) for c in batched)
    prompted = make_captioner(f"blip2:{path}", device="cpu", prompt="a photo of",
                              max_new_tokens=4, min_new_tokens=1,
                              generate_kwargs={"suppress_tokens": special_ids()})
    assert len(prompted.caption(pics)) == 3


def test_blip_v1_checkpoint(tmp_path, images):
    import torch
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    try:
        tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    except TypeError:  # transformers 4.x takes a vocabulary file
        (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
        tok = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    tok.add_special_tokens({"bos_token": "[DEC]"})
    config = BlipConfig(
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, image_size=32, patch_size=8),
        text_config=dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, encoder_hidden_size=16,
                         max_position_embeddings=64, bos_token_id=tok.bos_token_id,
                         sep_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.sep_token_id))
    torch.manual_seed(0)
    path = tmp_path / "blip"
    BlipForConditionalGeneration(config).save_pretrained(path)
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                  tokenizer=tok).save_pretrained(path)
    pics = [Image.open(p).convert("RGB") for p in sorted(images.rglob("*.png"))[:2]]
    cap = make_captioner(f"hf:{path}", device="cpu", max_new_tokens=5, min_new_tokens=2)
    assert cap.kind == "blip" and len(cap.caption(pics)) == 2
    kept = make_captioner(f"blip:{path}", device="cpu", prompt="a picture of", keep_prompt=True,
                          max_new_tokens=5, min_new_tokens=2).caption(pics)
    cut = make_captioner(f"blip:{path}", device="cpu", prompt="a picture of",
                         max_new_tokens=5, min_new_tokens=2).caption(pics)
    assert all(k.startswith("a picture of") for k in kept)
    assert [" ".join(("a picture of " + c).split()) for c in cut] == kept


def test_cli_model_captions_with_prefix_class_and_txt(blip2_dir, images, tmp_path):
    out = tmp_path / "captions.jsonl"
    assert cli_caption([str(images), "--captioner", f"blip2:{blip2_dir}", "--out", str(out),
                        "--device", "cpu", "--batch-size", "3", "--max-new-tokens", "4",
                        "--min-new-tokens", "1", "--prefix-class", "--format", "varclip-txt",
                        "--quiet", *suppress_args()]) == 0
    rows = read_jsonl(out)
    assert len(rows) == 7
    assert all(r["caption"].startswith("tench, ") for r in rows[:4])
    assert all(r["caption"].startswith("goldfish, ") for r in rows[4:])
    records = read_caption_manifest(images / "image_captions.txt").records
    assert [c for _, c in records] == [r["caption"] for r in rows]


def test_sharded_ranks_cover_every_image_once_and_merge(blip2_dir, images, tmp_path, capsys):
    reference = tmp_path / "ref.jsonl"
    cap = make_captioner(f"blip2:{blip2_dir}", device="cpu", max_new_tokens=4, min_new_tokens=1,
                         generate_kwargs={"suppress_tokens": special_ids()})
    caption_images(images, reference, cap, batch_size=7, log_every=None)
    merge_shards(reference)

    out = tmp_path / "sharded" / "captions.jsonl"
    common = [str(images), "--captioner", f"blip2:{blip2_dir}", "--out", str(out), "--device",
              "cpu", "--batch-size", "2", "--max-new-tokens", "4", "--min-new-tokens", "1",
              *suppress_args(), "--quiet", "--world-size", "3"]
    for rank in range(3):
        assert cli_caption(common + ["--rank", str(rank)]) == 0
    assert "--merge-only" in capsys.readouterr().err  # ranks started by hand do not merge
    shards = shard_files(out)
    assert [p.name for p in shards] == [f"captions.rank{r}.jsonl" for r in range(3)]
    keys = [row["image"] for p in shards for row in read_rows(p)[0]]
    assert len(keys) == 7 and len(set(keys)) == 7
    assert [len(read_rows(p)[0]) for p in shards] == [3, 2, 2]  # items[rank::world]
    assert cli_caption([str(images), "--out", str(out), "--merge-only"]) == 0
    assert not shard_files(out)
    # the same captions as one process with one batch: independent of batching and sharding
    assert read_jsonl(out) == [
        {**r, "image": "../" + r["image"]} for r in read_jsonl(reference)]
    # a later run with another world size finds everything done
    assert cli_caption(common[:-2] + ["--world-size", "2", "--rank", "1"]) == 0
    assert "captioned 0 of 3 images (3 already done" in capsys.readouterr().out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a FIFO to pause the run")
def test_resume_after_sigkill_captions_every_image_exactly_once(blip2_dir, tmp_path, capsys):
    root = tmp_path / "train"
    make_images(root, {"n01440764": 5, "n01443537": 5}, seed=1)
    # A FIFO named like an image, sorted last: opening it blocks, so the run is
    # guaranteed to be mid-way (earlier batches written, later ones not) when killed.
    (root / "zz").mkdir()
    fifo = root / "zz" / "wait.png"
    os.mkfifo(fifo)
    out = tmp_path / "captions.jsonl"
    cmd = [sys.executable, "-m", "varclip.caption", str(root), "--captioner",
           f"blip2:{blip2_dir}", "--out", str(out), "--device", "cpu", "--batch-size", "2",
           "--max-new-tokens", "4", "--min-new-tokens", "1", "--loader-threads", "1", "--quiet",
           *suppress_args()]
    shard = shard_path(out, 0)
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if shard.exists() and shard.read_bytes().count(b"\n") >= 2:
                break
            if proc.poll() is not None:
                pytest.fail(f"the run ended early: {proc.communicate()[1].decode()[-2000:]}")
            time.sleep(0.05)
        else:
            pytest.fail("no caption written within 60 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = read_rows(shard)[0]
    assert 2 <= len(before) <= 10 and not out.exists()
    # and a write torn by the kill
    with open(shard, "ab") as fh:
        fh.write(b'{"image": "train/n01443537/004.png", "capt')
    fifo.unlink()
    Image.new("RGB", (30, 30), (200, 10, 10)).save(fifo)
    # the same command again (in this process, to save a start-up)
    assert cli_caption(cmd[3:]) == 0
    assert f"({len(before)} already done" in capsys.readouterr().out
    rows = read_jsonl(out)
    keys = [r["image"] for r in rows]
    expected = sorted(f"train/{p.relative_to(root).as_posix()}" for p in root.rglob("*.png"))
    assert keys == expected and len(expected) == 11
    # the first run's captions were kept, not redone
    assert {r["image"]: r["caption"] for r in before}.items() <= {r["image"]: r["caption"]
                                                                 for r in rows}.items()
    assert not shard.exists() and read_caption_manifest(out).problems == []


def test_torchrun_two_processes_merge(blip2_dir, images, tmp_path):
    out = tmp_path / "captions.jsonl"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "varclip.caption", str(images), "--captioner", f"blip2:{blip2_dir}",
           "--out", str(out), "--device", "cpu", "--batch-size", "2", "--max-new-tokens", "4",
           "--min-new-tokens", "1", "--quiet", "--format", "varclip-txt", *suppress_args(),
           "--txt-out", str(tmp_path / "train" / "image_captions.txt")]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "rank 0/2" in done.stdout and "rank 1/2" in done.stdout
    assert "wrote 7 captions" in done.stdout
    rows = read_jsonl(out)
    assert len(rows) == 7 and len({r["image"] for r in rows}) == 7 and not shard_files(out)
    txt = read_caption_manifest(tmp_path / "train" / "image_captions.txt")
    assert [c for _, c in txt.records] == [r["caption"] for r in rows]

