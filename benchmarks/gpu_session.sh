#!/usr/bin/env bash
# One device call for issue 5 (run through the device tool with carry: [".whl", "data-cifar10"]):
#   here, once:  mkdir -p data-cifar10 && cp ../shared/data/cifar10/* data-cifar10/
#                (both folders are git-ignored; see the device README for fetching the wheels into .whl)
#   there:       bash benchmarks/gpu_session.sh
# Installs the carried wheels (diffusers, ART, opacus and this package's pure-Python needs), then runs the
# CIFAR-10 reproduction and the speed benchmark, writing everything under $OUT.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD:${PYTHONPATH:-}"
export PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -m diffence_plugin.cli reproduce cifar10 --data data-cifar10 --out "$OUT/reproduce" --no-progress \
  2>&1 | tee "$OUT/reproduce.log"
python3 benchmarks/bench_defense.py --devices cuda --inputs 512 --naive-inputs 2 --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log"
