#!/usr/bin/env bash
# Trains the five zoo models at once on one GPU: five processes, each with its own crop workers.
# Usage: [ZOO_TASKS="motion_deblur defocus_deblur"] [ZOO_INIT_ROOT=DIR] zoo/train_zoo.sh OUTPUT_ROOT MINUTES \
#          [extra train_indi.py flags...]
# ZOO_TASKS picks a subset (default: all five); fewer processes share the GPU, so each trains faster.
# ZOO_INIT_ROOT: fine-tune each task from DIR/indi-<task> where that repo exists (--init_from), else start afresh.
# ZOO_TRAIN_DATA: the clean photos (default data/photos/train; data/shared_photos/train for the 365 shared photos).
# Validation runs only when data/photos/val exists (a GPU upload may leave it out to stay under its size limit).
# The zoo was trained with: zoo/train_zoo.sh /tmp/zoo <minutes> (see each model card for the exact run).
set -uo pipefail
out=${1:?output root}; minutes=${2:?minutes per model}; shift 2
mkdir -p "$out"
tasks=${ZOO_TASKS:-denoise sr4 jpeg motion_deblur defocus_deblur}
# Recorded in each run's train_info.json (and so in its model card): what started it and how many runs shared the GPU.
export INDI_LAUNCHED_BY=${INDI_LAUNCHED_BY:-"zoo/train_zoo.sh $out $minutes $*"}
export INDI_CONCURRENT_RUNS=${INDI_CONCURRENT_RUNS:-$(wc -w <<< "$tasks")}
declare -A crop=([denoise]=128 [sr4]=128 [jpeg]=128 [motion_deblur]=192 [defocus_deblur]=192)
# JPEG is encoded in the crop workers (PIL, CPU); the other tasks degrade on the GPU and need few workers.
declare -A workers=([denoise]=2 [sr4]=2 [jpeg]=5 [motion_deblur]=2 [defocus_deblur]=2)
val=(); [[ -d data/photos/val ]] && val=(--validation_data_dir data/photos/val)
for task in $tasks; do
  init=(); [[ -n "${ZOO_INIT_ROOT:-}" && -f "$ZOO_INIT_ROOT/indi-$task/model_index.json" ]] \
    && init=(--init_from "$ZOO_INIT_ROOT/indi-$task")
  # TQDM_MININTERVAL: one progress line (loss, images/s) every 30 s, not thousands of lines in the log.
  TQDM_MININTERVAL=30 python -m train.train_indi --task "$task" \
    --train_data_dir "${ZOO_TRAIN_DATA:-data/photos/train}" "${val[@]}" "${init[@]}" \
    --output_dir "$out/indi-$task" --resolution "${crop[$task]}" --train_batch_size 32 \
    --max_train_steps 1000000 --max_train_minutes "$minutes" --lr_warmup_steps 500 \
    --mixed_precision bf16 --channels_last --dataloader_num_workers "${ZOO_WORKERS:-${workers[$task]}}" \
    --logging_steps 200 --checkpointing_steps 5000 --validation_steps 2000 --seed 0 \
    "$@" > "$out/indi-$task.log" 2>&1 &
done
status=0
for job in $(jobs -p); do wait "$job" || status=1; done
for task in $tasks; do
  echo "== $task: $(grep -c 'validation:' "$out/indi-$task.log") validations"; grep -E 'validation:|error|Error' "$out/indi-$task.log" | tail -3
done
exit $status
