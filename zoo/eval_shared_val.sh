#!/usr/bin/env bash
# Scores zoo repos on the 41 held-out shared photos (one 256 px centre crop each): every setting the zoo targets
# name, at 1, 4 and 8 steps (the trade-off rule; the settings only reported, at 1 step), CDnCNN peers beside the
# denoiser. Same seeds for every repo, so two runs compare paired, crop by crop.
# Usage: zoo/eval_shared_val.sh MODELS_DIR OUT_DIR [TASK ...]
#   MODELS_DIR holds indi-<task> repos (model_cards for the bundled ones); results go to OUT_DIR/indi-<task>/.
set -euo pipefail
cd "$(dirname "$0")/.."
models=${1:?models folder}; out=${2:?output folder}; shift 2
tasks=("$@"); [[ ${#tasks[@]} -eq 0 ]] && tasks=(denoise sr4 jpeg motion_deblur defocus_deblur)
data=${DATA_DIR:-data/shared_photos/val}
common=(--data_dir "$data" --crop 256 --grid 1 --steps 1 4 8 --threads "${THREADS:-1}")
# BM3D (true sigma) joins the peers where the optional bm3d package is installed (pip install bm3d), as in eval_zoo.sh.
bm3d=$(python -c "import bm3d" 2>/dev/null && echo --bm3d || true)
for task in "${tasks[@]}"; do
  repo=$models/indi-$task; dest=$out/indi-$task
  if [[ ! -f $repo/model_index.json ]]; then echo "skipping $task: no repo at $repo"; continue; fi
  run() { python -m train.eval_indi --model "$repo" --task "$task" "${common[@]}" --output_dir "$dest" "$@"; }
  case $task in
    denoise) run --sigma 25 --peers $bm3d; run --sigma 50 --peers $bm3d ;;
    jpeg) run --quality 10; for q in 30 50 75; do run --quality "$q" --steps 1; done ;;
    sr4) run; run --downscale bilinear --steps 1; run --downscale box --steps 1 ;;
    *) run ;;
  esac
done
