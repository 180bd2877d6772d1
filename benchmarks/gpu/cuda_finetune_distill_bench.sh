#!/bin/bash
# The CUDA paths on a lent GPU machine (run there through the device tool, from the repo root):
# finetune, distill (labels-only and KD), evaluate, and bench --backend torch-cuda at batch 1 and 32.
#
# What it reads, prepared here and carried as .gpu/ (ignored by git; the machine has no network and
# an image with transformers 5.x, which edgewise does not support yet):
#   .gpu/whl/     transformers==4.57.6, tokenizers==0.22.2, huggingface_hub==0.36.2 wheels (pip download)
#   .gpu/minilm/  the built-in all-MiniLM-L6-v2 with its weights stored in fp16 (45 MB: the carry limit
#                 is 64 MiB); transformers loads them back into fp32
#   .gpu/movies/  the movie-review split of benchmarks/cpu_distill_minilm_movies.py (train/validation/test.csv)
# Results of the 2026-11-28 run (NVIDIA H200): benchmarks/results/gpu_h200/.
# One GPU check of the CUDA paths: finetune, distill, evaluate, bench --backend torch-cuda.
set -x
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.get_device_name(0))"
python3 -m edgewise env --json > $OUT/env.json
R=/tmp/runs; mkdir -p $R
SECONDS=0
timeout 200 python3 -m edgewise finetune .gpu/minilm .gpu/movies -o $R/teacher --epochs 3 --max-length 56 2>&1 | tail -4
echo "FINETUNE_WALL $SECONDS"
python3 -m edgewise evaluate $R/teacher .gpu/movies --split test --json > $OUT/teacher_eval.json
for a in 0 0.7; do
  SECONDS=0
  timeout 120 python3 -m edgewise distill $R/teacher .gpu/movies -o $R/student-a$a --layers 3 --epochs 3 --alpha $a --temperature 4 2>&1 | tail -3
  echo "DISTILL_a${a}_WALL $SECONDS"
done
for d in teacher student-a0 student-a0.7; do cp $R/$d/edgewise.json $OUT/manifest-$d.json; done
timeout 150 python3 -m edgewise bench $R/teacher $R/student-a0.7 --backend torch-cuda --batch-sizes 1,32 --data .gpu/movies --split test -o $R/bench --json > $OUT/bench.json
cp $R/bench/report.md $OUT/bench.md
echo DONE
