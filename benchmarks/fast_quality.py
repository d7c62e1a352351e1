"""Quality cost of `--fast` on the embedded emoji model: FID against the training images and
prompt faithfulness (seen / unseen captions), exact mode and each variant with the same seeds.

The protocol is the model card's (docs/model_card_emoji.md): FID with the official_fid sampling
preset on the first N training captions, one image each (seed + i), against N training images;
faithfulness with the model's recommended sampling on N seen and all held-out captions.

    varclip data emoji out/emoji
    python benchmarks/fast_quality.py out/emoji --fid-n 500 --faith-n 200 --variants exact,preset
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from varclip.config import sampling_preset
from varclip.data.captions import read_caption_manifest
from varclip.entry import load_pipeline
from varclip.eval.faithfulness import evaluate_faithfulness, train_features
from varclip.eval.fid import extract_features, fid_from_features, open_input
from varclip.eval.inception import load_feature_extractor
from varclip.eval.sample import caption_work_list, read_captions, sample_to_folder

PLAIN = dict(autocast="off", quantize="off", compile="off", prune_scales=0, cfg_off_last=0, channels_last="off")
VARIANTS = {
    "exact": False,
    "preset": True,
    "bf16": dict(PLAIN, autocast="bf16"),
    "prune": dict(PLAIN, prune_scales=2, prune_keep=0.5),
    "prune1": dict(PLAIN, prune_scales=1, prune_keep=0.5),
    "cfg_off_last1": dict(PLAIN, cfg_off_last=1),
    "prune+cfg_off_last1": dict(PLAIN, prune_scales=2, prune_keep=0.5, cfg_off_last=1),
    "int8": dict(PLAIN, quantize="int8"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", help="the folder `varclip data emoji` wrote (train.jsonl, heldout.jsonl)")
    ap.add_argument("--out", default="out/fast_quality")
    ap.add_argument("--variants", default="exact,preset")
    ap.add_argument("--fid-n", type=int, default=500)
    ap.add_argument("--faith-n", type=int, default=200)
    args = ap.parse_args()
    data, out = Path(args.data), Path(args.out)
    pipe = load_pipeline(device="cpu")
    pipe.set_progress_bar_config(disable=True)
    extractor = load_feature_extractor(None, "cpu")
    train = data / "train.jsonl"
    records = read_caption_manifest(train).records
    feats = train_features(records)
    seen = sorted({c for _, c in records})
    unseen = sorted({c for _, c in read_caption_manifest(data / "heldout.jsonl").records})
    rng = random.Random(0)  # the faithfulness command's draw of seen captions (seed 0)
    queries = {"seen": rng.sample(seen, min(args.faith_n, len(seen))),
               "heldout": rng.sample(unseen, min(args.faith_n, len(unseen)))}
    fid_items = caption_work_list(read_captions(train)[: args.fid_n], 1, 0)
    ref = extract_features(open_input(train).images, extractor, limit=args.fid_n, progress=False).features
    results = {}
    for name in args.variants.split(","):
        pipe.enable_fast(VARIANTS[name])
        t = time.perf_counter()
        folder = out / name
        sample_to_folder(pipe, fid_items, folder, sampling_preset("official_fid"), progress=False)
        t_fid = time.perf_counter() - t
        fid = fid_from_features(ref, extract_features(open_input(folder).images, extractor, progress=False).features)
        row = {"fid": round(fid, 2), "fid_sampling_s": round(t_fid, 1)}
        settings = pipe.sampling_config(None)
        for split, qs in queries.items():
            r = evaluate_faithfulness(pipe, train, qs, split, 0, settings, train_feats=feats)
            row[f"{split}_top1"], row[f"{split}_top5"] = round(100 * r.top1, 1), round(100 * r.top5, 1)
        results[name] = row
        print(name, json.dumps(row), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
