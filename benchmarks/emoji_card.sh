#!/usr/bin/env bash
# Every figure of docs/model_card_emoji.md for one model directory, as JSON files in OUT.
#
#   bash benchmarks/emoji_card.sh MODEL_DIR OUT [DATA]
#
# DATA is the output of `varclip data emoji` (default out/emoji) plus the first edition's
# manifests, which `varclip data emoji DATA_OM --styles openmoji --variants name,alias` builds
# (the first edition's protocol: OpenMoji captions and images only; default out/emoji_openmoji).
# About 15 min on 2 CPU cores for the embedded model.
set -euo pipefail
model=$1
out=$2
data=${3:-out/emoji}
om=${DATA_OM:-out/emoji_openmoji}
mkdir -p "$out"
q=(--quiet)

# seed diversity and colour probes (the model's recommended sampling)
python "$(dirname "$0")/emoji_probes.py" --model "$model" --grid "$out/probes.png" --json "$out/probes.json"

# held-out token loss with the caption and with the null condition
varclip eval tokens --model "$model" --data "$om/heldout.jsonl" --compare-null --json "$out/tokens_openmoji.json" "${q[@]}"
varclip eval tokens --model "$model" --data "$data/heldout.jsonl" --compare-null --json "$out/tokens_all.json" "${q[@]}"

# prompt faithfulness (retrieval among the training images), seen and unseen captions
varclip eval faithfulness --model "$model" --train "$om/train.jsonl" --heldout "$om/heldout.jsonl" --n 200 \
    --json "$out/faith_openmoji.json" "${q[@]}"
varclip eval faithfulness --model "$model" --train "$data/train.jsonl" --heldout "$data/heldout.jsonl" --n 200 \
    --json "$out/faith_all.json" "${q[@]}"

# FID against the training images (official sampling: cfg 1.5, top-k 900, top-p 0.96), 500 vs 500:
# the first 500 OpenMoji captions (the first edition's protocol) and 500 spread over both styles
python - "$data/train.jsonl" "$data/train_spread500.jsonl" <<'EOF'
import sys
from pathlib import Path
rows = Path(sys.argv[1]).read_text().splitlines()
Path(sys.argv[2]).write_text("".join(rows[i * len(rows) // 500] + "\n" for i in range(500)))
EOF
for set in openmoji spread; do
    manifest=$([ $set = openmoji ] && echo "$om/train.jsonl" || echo "$data/train_spread500.jsonl")
    varclip sample-fid --model "$model" --captions "$manifest" --limit 500 --out "$out/fid_$set" "${q[@]}"
    varclip eval fid "$manifest" "$out/fid_$set" --limit 500 --json "$out/fid_$set.json" "${q[@]}"
done
echo "wrote $out"
