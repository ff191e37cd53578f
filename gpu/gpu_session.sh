#!/usr/bin/env bash
# One lent-GPU session, prepared to fit its limits (one command <= 600 s, files back: <= 8, <= 16 MiB each):
#   1. trains ZOO_TASKS (default: the two deblurring models, which need the most compute) with train_zoo.sh,
#      MINUTES each, all at once on the one GPU; with ZOO_GROWN_FLAGS (e.g. "--encoder_blocks 2 1 1 1
#      --decoder_blocks 1 1 1 2") a second run per task beside the first, fine-tuning a deeper copy of its init repo
#      (train/grow_network.py; needs ZOO_INIT_ROOT);
#   2. packs into OUT one tar per trained repo (model_index, scheduler, unet with fp16 weights, train_info.json;
#      13 MB each): indi-<task>.tar, and indi-<task>-grown.tar for the grown runs; a tar over PART_BYTES (default
#      15 MiB, under the 16 MiB a returned file may have) comes as parts indi-<task>-grown.tar.00, .01, ...;
#   3. runs gpu_bench.sh on the first trained model (training images/s with real vs synthetic data, inference eager /
#      bf16 / compile / CUDA graphs, the crop benchmark) for at most BENCH_SECONDS (default 240), unless SKIP_BENCH=1;
#   4. packs the training logs (report.tar.gz) and the bench's logs and JSON (bench_report.tar.gz).
# Back on the CPU: tar -xf OUT/indi-<task>.tar -C outputs/zoo_candidates (parts: cat OUT/indi-<task>-grown.tar.* |
# tar -x -C outputs/zoo_candidates), then train/eval_indi.py on it (see zoo/eval_zoo.sh), and copy it into
# model_cards/ only if the evaluation shows it is better.
#
# Upload limit (64 MiB): the tracked tree is ~84 MiB, so before the call delete the bundled weights here that the run
# does not fine-tune, and the LPIPS weights (rm model_cards/indi-<other tasks>/unet/diffusion_pytorch_model.safetensors
# indi_pipeline/weights/lpips_alex.safetensors; `git checkout model_cards indi_pipeline/weights` restores them), and
# carry data/photos/train and .whl (diffusers is not installed there). Timing: MINUTES + 1 min of start-up + BENCH_SECONDS.
# The 365 shared photos: ../shared does not travel, so carry the prepared data/shared_photos/train (about 21 MB) and
# set ZOO_TRAIN_DATA=data/shared_photos/train; --degradation_mix photo trains on the photo mix (train/README.md).
#
# Fine-tuning a bundled model (ZOO_INIT_ROOT, see train_zoo.sh): what moved the defocus model +0.49 dB at 1 step on a
# lent H100 (5 minutes, then 3 more from that output at lr 1e-4; the tree travelled at 50 MB with its weights kept):
#   ZOO_TASKS=defocus_deblur ZOO_INIT_ROOT=model_cards SKIP_BENCH=1 gpu/gpu_session.sh "$OUT" 5 \
#     --eps 0.01 --t_sampling mixture --t_one_probability 0.4 --learning_rate 2e-4 --lr_warmup_steps 100 \
#     --resolution 192 --train_batch_size 64
# For the deblurring models add --loss nmse --t_one_probability 0.5: on the CPU it gained the motion model +0.19 dB at 1
# step over 8 draws in 95 minutes, against +0.04 dB for 40 minutes of L1, mostly on mild blur (README, Model zoo).
# The plain motion network plateaued at its stage 5: 108 more CPU minutes gave +0.007 dB, and 7 + 3 minutes on an H100
# (623,000 crops of 192 px) +0.005 dB. Deeper copies gained +0.05 dB (on the CPU and on the H100), and the bundled motion
# model is now that deeper copy (2026-11-27: ZOO_GROWN_FLAGS="--encoder_blocks 1 1 2 4 --middle_blocks 4 --decoder_blocks
# 2 1 1 1", 7 minutes beside the plain run): fine-tune it as it is, without ZOO_GROWN_FLAGS. Measured on that H100 (batch
# 64 x 192 px, bf16): the plain net alone 1,447 images/s; side by side, plain 890 and deeper 729.
# A second call on the still-warm machine can go on from the first's output: GPU_SESSION_WORK=/tmp/gs2
# ZOO_INIT_ROOT=/tmp/gpu_session/zoo (the first call's work folder). Never `pkill -f` a pattern that the call's own
# command line contains: it kills the call's shell (one lent call was lost so).
# --compile (torch.compile of the training step) is one more flag; gpu_bench.sh's compiled run shows whether it pays
# on the GPU (on the CPU it gave +8-10 %).
# CPU check with tiny settings: SKIP_BENCH=1 gpu/gpu_session.sh /tmp/session 0.1 --resolution 64 \
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
variants=(zoo)
# For each run's train_info.json: the whole session command, and every run training on the GPU at once.
settings="ZOO_TASKS=\"$ZOO_TASKS\"${ZOO_INIT_ROOT:+ ZOO_INIT_ROOT=$ZOO_INIT_ROOT}${ZOO_GROWN_FLAGS:+ ZOO_GROWN_FLAGS=\"$ZOO_GROWN_FLAGS\"}"
export INDI_LAUNCHED_BY="$settings gpu/gpu_session.sh $out $minutes $*"
runs_per_task=1; [[ -n "${ZOO_GROWN_FLAGS:-}" ]] && runs_per_task=2
export INDI_CONCURRENT_RUNS=$(( $(wc -w <<< "$ZOO_TASKS") * runs_per_task ))
zoo/train_zoo.sh "$work/zoo" "$minutes" "$@" & runs=($!)
if [[ -n "${ZOO_GROWN_FLAGS:-}" ]]; then
  # shellcheck disable=SC2086 # the flags are words
  zoo/train_zoo.sh "$work/grown" "$minutes" "$@" $ZOO_GROWN_FLAGS & runs+=($!); variants+=(grown)
fi
for run in "${runs[@]}"; do wait "$run" || status=1; done
# A file over 16 MiB does not come back from the lent machine, and a grown net's repo can be bigger (12.7 M parameters:
# 25 MB): such a tar leaves as NAME.tar.00, NAME.tar.01, ... (cat them back together).
split_if_too_big() {
  local file=$1 limit=${PART_BYTES:-15728640}
  (( $(stat -c %s "$file") > limit )) || return 0
  split -b "$limit" -d -a 2 "$file" "$file." && rm "$file"
}
for variant in "${variants[@]}"; do
  suffix=""; [[ $variant == grown ]] && suffix="-grown"
  for task in $ZOO_TASKS; do
    if [[ -f "$work/$variant/indi-$task/model_index.json" ]]; then
      tar -C "$work/$variant" -cf "$out/indi-$task$suffix.tar" "indi-$task/model_index.json" "indi-$task/scheduler" \
        "indi-$task/unet" "indi-$task/train_info.json"
      split_if_too_big "$out/indi-$task$suffix.tar"
    else
      echo "gpu_session: $task ($variant) produced no model (see its log)" >&2; status=1
    fi
  done
done
# Logs and bench results, packed as soon as each part ends (a run cut short by the call's time limit keeps what came
# before): the last 200 kB of each log is plenty (progress lines every 30 s, validations, errors).
pack() {  # pack NAME FILE...: OUT/NAME.tar.gz of the files that exist
  local name=$1; shift; mkdir -p "$work/$name"
  for file in "$@"; do
    [[ -f "$file" ]] || continue
    case $file in
      *.log) tail -c 200000 "$file" > "$work/$name/$(basename "$(dirname "$file")")-$(basename "$file")" ;;
      *) cp "$file" "$work/$name/" ;;
    esac
  done
  tar -C "$work" -czf "$out/$name.tar.gz" "$name"
}
pack report "$work"/zoo/*.log "$work"/grown/*.log
first=$(for task in $ZOO_TASKS; do [[ -f "$work/zoo/indi-$task/model_index.json" ]] && echo "$work/zoo/indi-$task"; done | head -1)
if [[ "${SKIP_BENCH:-0}" != 1 && -n "$first" ]]; then
  timeout "${BENCH_SECONDS:-240}" env -u INDI_LAUNCHED_BY -u INDI_CONCURRENT_RUNS gpu/gpu_bench.sh "$work/bench" "$first" > "$work/bench.log" 2>&1 || status=1
  pack bench_report "$work"/bench.log "$work"/bench/*.log "$work"/bench/*.json
fi
ls -la "$out"
exit $status
