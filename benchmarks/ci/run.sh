#!/usr/bin/env bash
# The CI latency/accuracy gate: build the CI model, benchmark it, compare with the committed baseline.
# Exit 0: pass; 1: regression; 2: usage error. `bash benchmarks/ci/run.sh --write-baseline` refreshes
# the baseline instead (do it on the runner type CI uses: latency baselines are per machine).
set -euo pipefail
cd "$(dirname "$0")/../.."
EDGEWISE="${EDGEWISE:-edgewise}"
python benchmarks/ci/make_model.py runs/ci
"$EDGEWISE" bench runs/ci/model --backend ort-cpu --threads 1 --seq-len 128 --batch-sizes 1,8 \
    --data builtin:bbc-news --accuracy-samples 200 --rounds 5 --min-runs 50 --min-time 2 \
    -o reports/ci --overwrite
if [ "${1:-}" = "--write-baseline" ]; then
    cp reports/ci/report.json benchmarks/ci/baseline-cpu.json
    echo "wrote benchmarks/ci/baseline-cpu.json"
    exit 0
fi
"$EDGEWISE" bench compare reports/ci/report.json benchmarks/ci/baseline-cpu.json \
    --max-latency-regression 10% --max-accuracy-drop 0.5
