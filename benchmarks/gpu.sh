#!/usr/bin/env bash
# The one way to use a lent GPU: the GPU preset and the speed benchmark, in one device call.
#   here, once:  mkdir -p .whl data-cifar10 && cp ../shared/data/cifar10/* data-cifar10/
#                pip download -d .whl diffusers adversarial-robustness-toolbox opacus pydantic pluggy safetensors
#                (both folders are git-ignored; the GPU image has torch but not these)
#   device tool: command "bash benchmarks/gpu.sh", carry [".whl", "data-cifar10"]
# Writes everything under $OUT: the GPU's name, the preset's run folder and log, the speed table.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 benchmarks/bench_speed.py --unet cifar --devices cuda --inputs 512 --out "$OUT/speed.json" | tee "$OUT/speed.md"
python3 -m diffence_plugin.cli reproduce cifar10 --preset gpu --data data-cifar10 --out "$OUT/reproduce" \
  --no-progress 2>&1 | tee "$OUT/reproduce.log"
