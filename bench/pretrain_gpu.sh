#!/usr/bin/env bash
# Pre-train a code encoder with `cgtrain pretrain` on a GPU machine within a fixed wall-clock budget, then pack
# the encoder directory for the trip back. Run from the repository root, with torch + transformers installed
# (cgtrain itself needs no install: PYTHONPATH=src):
#
#     bash bench/pretrain_gpu.sh OUT_DIR BUDGET_S [--source EXTRA]...   # e.g. --source juliet_train.jsonl.gz
#
# 1. A calibration run (a small corpus, 150 steps) measures this device's steps per second for the size and batch
#    (skipped when STEPS is set). On an H200 a 40-step calibration read half the rate of the real run (1.6 against
#    3.4 steps/s at batch 128): the first steps carry the start-up.
# 2. The real run plans its schedule from that figure (so the cosine schedule ends near the budget rather than
#    being cut by it), over the interpreter's site-packages (Python; C/C++ headers) and /usr/include plus the
#    extra sources, and stops at BUDGET_S whatever happens (--time-budget).
# 3. The encoder files (no optimizer state, no corpus) are packed as OUT_DIR/encoder.tgz.* pieces of 15 MB;
#    `cat encoder.tgz.* | tar xz -C DIR` unpacks them. Not the standard library: the synthetic bug set is made
#    from it, and an encoder must not pre-train on the code it is tested on.
set -euo pipefail
out=${1:?usage: pretrain_gpu.sh OUT_DIR BUDGET_S [--source EXTRA]...}
budget=${2:?usage: pretrain_gpu.sh OUT_DIR BUDGET_S [--source EXTRA]...}
shift 2
py=${PYTHON:-python3}
work=${WORK:-/tmp/cgtrain-pretrain}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
mkdir -p "$out"
rm -rf "$work" && mkdir -p "$work"
sp=$($py -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
incl=()
[ -d /usr/include ] && incl=(--source /usr/include)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
$py -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
"transformers", transformers.__version__)'
common=(--ext py,c,h,cc,cpp,hpp --size "${SIZE:-base}" --vocab-size "${VOCAB:-16000}" --seq-len 256
        --batch-size "${BATCH:-512}" --lr "${LR:-5e-4}" --amp --device "${DEVICE:-cuda}" --checkpoint-every 500)

t0=$(date +%s)
left=$budget
if [ -n "${STEPS:-}" ]; then
  steps=$STEPS  # a known rate: no calibration
else
  $py -m cgtrain pretrain --source "$sp" --max-files 300 --steps 150 "${common[@]}" --out "$work/calib"
  rate=$($py -c "import json; r = json.load(open('$work/calib/pretrain_report.json'))
print(r['steps_this_process'] / r['seconds_this_process'])")
  prep=${PREP_S:-90}  # corpus, tokenizer and start-up of the real run (measured: 60-80 s for 8000 files)
  left=$(( budget - ($(date +%s) - t0) ))
  steps=$($py -c "print(max(100, int($rate * ($left - $prep))))")
  echo "calibration: $rate steps/s; $left s left of $budget; planning $steps steps"
fi

$py -m cgtrain pretrain --source "$sp" "${incl[@]}" "$@" --max-files "${MAX_FILES:-8000}" --steps "$steps" \
    "${common[@]}" --time-budget "$left" --out "$work/enc"
cp "$work/enc/pretrain_report.md" "$work/enc/pretrain_report.json" "$out/"
(cd "$work/enc" && tar czf - config.json model.safetensors tokenizer.json tokenizer_config.json \
    cgtrain_rtd_head.safetensors pretrain_report.json pretrain_report.md pretrain_settings.json) |
    split -b 15M - "$out/encoder.tgz."
ls -la "$out"
