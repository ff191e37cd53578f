#!/usr/bin/env bash
# The GPU figures of README's Performance section, in one short run (about 5 minutes on an H100/H200): the batch
# path per task (benchmarks/batch_bench.py: images/s, and a check that it never waits for the GPU), training
# images/s with the real data loader vs synthetic batches (and real with --compile), then inference at 1024^2 x 10 steps (eager, bf16,
# compiled, CUDA graphs), then the crop-sampler benchmark. Each part writes its JSON as soon as it has a figure, so a
# run cut short by a time limit keeps what it measured; the parts run in the order the README needs them most.
# Usage: gpu/gpu_bench.sh OUT_DIR [MODEL_REPO]   (default model_cards/indi-denoise)
# BENCH_TRAIN_STEPS (default 200): steps of each training run (images/s is the median over its logging windows).
# BENCH_INFERENCE=0: only the batch path and the training runs (skips inference and the crop benchmark).
# BENCH_PRECISION (default bf16): the training runs' mixed precision. A check of this script on the project's CPU
# (where a bf16 step took 20 s): BENCH_TRAIN_STEPS=40 BENCH_TRAIN_REPEATS=1 BENCH_INFERENCE=0 BENCH_PRECISION=no.
set -uo pipefail
out=${1:?output folder}; model=${2:-model_cards/indi-denoise}; mkdir -p "$out"
common=(--task denoise --resolution 128 --train_batch_size 32 --max_train_steps "${BENCH_TRAIN_STEPS:-200}"
        --logging_steps 40 --mixed_precision "${BENCH_PRECISION:-bf16}" --channels_last --report_to none --validation_steps 0
        --checkpointing_steps 100000 --dataloader_num_workers 6 --lr_warmup_steps 10)
# First (seconds): the batch path of each task alone, and whether any of it makes the CPU wait for the GPU.
python -m benchmarks.batch_bench --train_data_dir data/photos/train --batches 30 --json "$out/batch_bench.json"
# Real and synthetic runs alternate (BENCH_TRAIN_REPEATS pairs, default 2), so that a drift of the GPU's clocks or
# of the machine hits both sides; the ratio is of the medians over the runs.
for round in $(seq 1 "${BENCH_TRAIN_REPEATS:-2}"); do
  python -m train.train_indi "${common[@]}" --train_data_dir data/photos/train --output_dir "$out/train_real_$round" > "$out/train_real_$round.log" 2>&1
  python -m train.train_indi "${common[@]}" --synthetic_data --output_dir "$out/train_synthetic_$round" > "$out/train_synthetic_$round.log" 2>&1
done
# Then the same real-loader run with --compile: its first 40-step window includes the compile, and the median of the
# five windows is over the others.
python -m train.train_indi "${common[@]}" --compile --train_data_dir data/photos/train --output_dir "$out/train_compiled_1" > "$out/train_compiled_1.log" 2>&1
python - "$out" "${BENCH_PRECISION:-bf16}" <<'PY'
import glob, json, statistics, sys
out, precision = sys.argv[1:3]
runs = {m: [json.load(open(p))["images_per_second_median"] for p in sorted(glob.glob(f"{out}/train_{m}_*/train_info.json"))]
        for m in ("real", "synthetic", "compiled")}
real, synthetic = statistics.median(runs["real"]), statistics.median(runs["synthetic"])
compiled = statistics.median(runs["compiled"]) if runs["compiled"] else None
compiled_text = f"{compiled:.0f}" if compiled else "failed"
print(f"training images/s (one process, batch 32 x 128^2, {precision}): real loader {real:.0f}, synthetic "
      f"{synthetic:.0f}, ratio {real / synthetic:.2f}; real loader with --compile: {compiled_text} (runs: {runs})")
json.dump({"precision": precision, "real_loader": real, "synthetic": synthetic, "ratio": real / synthetic,
           "real_loader_compiled": compiled, "runs": runs}, open(f"{out}/gpu_training.json", "w"), indent=2)
PY
# BENCH_INFERENCE=0 stops here (the inference figures are in README already; saves about 2 minutes of a lent GPU).
[[ "${BENCH_INFERENCE:-1}" == 0 ]] && exit 0
python -m benchmarks.gpu_bench --model "$model" --compile --repeats "${BENCH_REPEATS:-5}" --json "$out/gpu_inference.json" 2>&1 | grep -v Loading
python -m benchmarks.crop_bench --train_data_dir data/photos/train --device cuda --dataloader_num_workers 6 --json "$out/crop_bench.json"
