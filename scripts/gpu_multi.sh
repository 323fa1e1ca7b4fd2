#!/usr/bin/env bash
# 1 vs 2 GPUs of one host at the full job (issue 13), then `infer --gpus 2` vs `--gpus 1` on the tiny
# bundled example with NCCL. Run from the repo root on the device machine; results land in $OUT.
set -u
export PYTHONPATH=${PYTHONPATH:-}:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
nvidia-smi --query-gpu=name --format=csv,noheader
nvidia-smi topo -m | head -4
B="python3 -m cosmos_t2.cli bench --preset 720p93 --compile --warmup 1 --iters 3"
CUDA_VISIBLE_DEVICES=0 timeout 200 $B --json-out "$OUT/gpu1.json" 2>&1 | grep -E "cosmos-t2|floor|Error|error" 
timeout 200 $B --cp 2 --json-out "$OUT/cp2.json" 2>&1 | grep -E "cosmos-t2|floor|Error|error"
timeout 200 $B --cp 2 --cfg-parallel --json-out "$OUT/cfg2.json" 2>&1 | grep -E "cosmos-t2|floor|Error|error"
if python3 -c "import cv2, av" 2>/dev/null; then
  for n in 1 2; do
    timeout 150 python3 -m cosmos_t2.cli infer examples/robot/edge.json --tiny --device cuda --gpus $n \
      --latents-only -o "$OUT/infer$n" --quiet 2>&1 | tail -3
  done
  python3 - "$OUT" <<'PY'
import sys, glob
from safetensors.torch import load_file
out = sys.argv[1]
a, b = (load_file(glob.glob(f"{out}/infer{n}/*.safetensors")[0]) for n in (1, 2))
for k in a:
    if a[k].is_floating_point():
        rel = ((a[k].double() - b[k].double()).norm() / a[k].double().norm().clamp_min(1e-30)).item()
        print(f"infer --gpus 2 vs 1: {k} rel err {rel:.2e}")
PY
else
  echo "cv2/av not importable here: infer --gpus 2 check skipped"
fi
