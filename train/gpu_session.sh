#!/usr/bin/env bash
# One lent-GPU session, prepared to fit its limits (one command <= 600 s, files back: <= 8, <= 16 MiB each):
#   1. trains ZOO_TASKS (default: the two deblurring models, which need the most compute) with train_zoo.sh,
#      MINUTES each, all at once on the one GPU;
#   2. runs gpu_bench.sh on the first trained model (inference eager / bf16 / compile / CUDA graphs, the crop
#      benchmark, training images/s with real vs synthetic data), unless SKIP_BENCH=1;
#   3. packs into OUT one tar per trained repo (model_index, scheduler, unet with fp16 weights, train_info.json;
#      13 MB each) and one small tar of logs and bench JSON.
# Back on the CPU: tar -xf OUT/indi-<task>.tar -C outputs/zoo_candidates, then train/eval_indi.py on it (see
# train/eval_zoo.sh), and copy it into model_cards/ only if the evaluation shows it is better.
#
# Upload limit (64 MiB): the tracked tree is ~54 MiB, so before the call delete the bundled weights here
# (rm model_cards/indi-*/unet/diffusion_pytorch_model.safetensors; `git checkout model_cards` restores them) and
# carry data/photos and .whl (diffusers is not installed there). Timing: MINUTES 5.5 + about 2.5 min of bench.
# Usage: train/gpu_session.sh OUT MINUTES [extra train_indi.py flags...]
#
# Fine-tuning a candidate instead (ZOO_INIT_ROOT, see train_zoo.sh), e.g. the motion model, the one furthest from
# its floor; carry data/photos/train (not val: 7.8 MiB over the limit otherwise), .whl and the candidate:
#   ZOO_TASKS=motion_deblur ZOO_INIT_ROOT=outputs/zoo_candidates train/gpu_session.sh "$OUT" 7 \
#     --eps 0.01 --t_sampling mixture --t_one_probability 0.25 --learning_rate 5e-4 --lr_warmup_steps 200
# CPU check with tiny settings: SKIP_BENCH=1 train/gpu_session.sh /tmp/session 0.1 --resolution 64 \
#   --train_batch_size 2 --max_train_steps 2 --mixed_precision no
set -uo pipefail
out=${1:?output folder}; minutes=${2:?minutes per model}; shift 2
mkdir -p "$out"
work=${GPU_SESSION_WORK:-/tmp/gpu_session}; mkdir -p "$work"
if ! python -c "import diffusers" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_session: cannot install the carried wheels in .whl" >&2; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export ZOO_TASKS=${ZOO_TASKS:-motion_deblur defocus_deblur}
status=0
train/train_zoo.sh "$work/zoo" "$minutes" "$@" || status=1
for task in $ZOO_TASKS; do
  repo="$work/zoo/indi-$task"
  if [[ -f "$repo/model_index.json" ]]; then
    tar -C "$work/zoo" -cf "$out/indi-$task.tar" "indi-$task/model_index.json" "indi-$task/scheduler" \
      "indi-$task/unet" "indi-$task/train_info.json"
  else
    echo "gpu_session: $task produced no model (see its log)" >&2; status=1
  fi
done
first=$(for task in $ZOO_TASKS; do [[ -f "$work/zoo/indi-$task/model_index.json" ]] && echo "$work/zoo/indi-$task"; done | head -1)
if [[ "${SKIP_BENCH:-0}" != 1 && -n "$first" ]]; then
  train/gpu_bench.sh "$work/bench" "$first" > "$work/bench.log" 2>&1 || status=1
fi
# Logs and bench results: the last 200 kB of each log is plenty (progress lines every 30 s, validations, errors).
mkdir -p "$work/report"
for log in "$work"/zoo/*.log "$work"/bench.log "$work"/bench/*.log; do
  [[ -f "$log" ]] && tail -c 200000 "$log" > "$work/report/$(basename "$(dirname "$log")")-$(basename "$log")"
done
cp "$work"/bench/*.json "$work/report/" 2>/dev/null
tar -C "$work" -czf "$out/report.tar.gz" report
ls -la "$out"
exit $status
