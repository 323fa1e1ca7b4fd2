#!/usr/bin/env bash
# The whole-job measurements of docs/benchmarks.md (issues 17 and 20), on one lent GPU, in parts that fit one
# device call each (10 minutes): `bash scripts/gpu_e2e.sh 1|2|3|4`; `fa4` installs FlashAttention-4 (see
# scripts/fa4_wheels.sh). Parts share the machine's /tmp: the random model folders (/tmp/e2e) and the compile
# cache ($COSMOS_T2_CACHE_DIR) carry over while it stays warm. Wheels (PyAV, diffusers) travel in .whl/ and are
# installed by part 1. Every run's JSON and log are packed into $OUT/partN.tgz.
# .whl/ (ignored by git) is filled here with: python3 -m pip download --no-deps --only-binary=:all:
#   --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 -d .whl av==19.0.2 diffusers==0.42.1
#   importlib_metadata   (then carry ".whl" in the device call that runs part 1)
set -u
export COLUMNS=150 PYTHONUNBUFFERED=1 COSMOS_T2_CACHE_DIR=/tmp/ct2cache PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-/tmp/out}
W=/tmp/e2e
R=/tmp/results/part${1:-x}  # $OUT takes 8 files back: everything is packed into one at the end
mkdir -p "$OUT" "$W" "$R"
SUMMARY=$R/summary.txt
DEADLINE=$(($(date +%s) + ${BUDGET_S:-570}))  # every run ends before the device call's 600 s do

bench() {  # NAME LIMIT_S ARGS...: one process, its wall time, its JSON and log
  local name=$1 limit=$2
  shift 2
  local t0 t1 rc left
  left=$((DEADLINE - $(date +%s)))
  if ((left < 20)); then
    echo "$name: not run, the call's time is spent" | tee -a "$SUMMARY"
    return
  fi
  t0=$(date +%s.%N)
  timeout "$((limit < left ? limit : left))" python3 -m cosmos_t2.cli "$@" >"$R/$name.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  printf '%-16s rc=%-3s wall=%7.1f s  %s\n' "$name" "$rc" "$(awk "BEGIN{print $t1 - $t0}")" "$*" |
    tee -a "$SUMMARY"
  grep -v '^ *$' "$R/$name.log" | tail -n 12
}

case ${1:-} in
1)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl ||
    exit 1
  nvidia-smi --query-gpu=name,driver_version,power.limit,memory.total --format=csv,noheader | tee -a "$SUMMARY"
  python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())' | tee -a "$SUMMARY"
  # The offload paths on CUDA first (tiny, quick): a broken one shows here, not in part 3.
  bench tiny_blocks 120 bench --e2e --preset tiny --device cuda --offload blocks --steps 2 --work-dir $W/t
  # Distilled edge model: a cold compile cache, then a warm one through plain `infer`, then 4 jobs in one process.
  bench distilled_cold 240 bench --e2e --distilled --work-dir $W/d --json-out $R/distilled_cold.json
  bench distilled_infer 120 infer $W/d/e2e.jsonl --model-dir $W/d/models --prompt-embeddings $W/d/prompt.safetensors \
    -o $W/d/infer --quiet
  cp $W/d/infer/e2e_0.json "$R/distilled_infer_sidecar.json"
  bench distilled_x4 200 bench --e2e --distilled --jobs 4 --work-dir $W/d --json-out $R/distilled_x4.json
  # Four controls (edge and vis computed, depth and seg given), 3 steps, resident: B=2 graphs compiled cold here.
  bench none_720p4 200 bench --e2e --controls edge,vis,depth,seg --steps 3 --offload none --work-dir $W/f4 \
    --json-out $R/none_720p4.json
  ;;
2)
  python3 -c 'import av, diffusers' || exit 1
  # The 35-step job through infer's path, then diffusers' step eager and compiled in the same process.
  bench full_35 560 bench --e2e --compare diffusers --warmup 1 --iters 3 --work-dir $W/f --json-out $R/full_35.json
  ;;
3)
  python3 -c 'import av' || exit 1
  # Memory tiers, 3 steps each (whole jobs through infer's path; `auto` picks the mode unless --offload none).
  bench none_720p1 100 bench --e2e --steps 3 --offload none --work-dir $W/f --json-out $R/none_720p1.json
  bench cap12_720p1 140 bench --e2e --steps 3 --memory-cap 12 --work-dir $W/f --json-out $R/cap12_720p1.json
  bench cap16_720p1 120 bench --e2e --steps 3 --memory-cap 16 --work-dir $W/f --json-out $R/cap16_720p1.json
  bench cap12_720p4 160 bench --e2e --steps 3 --memory-cap 12 --controls edge,vis,depth,seg --work-dir $W/f4 \
    --json-out $R/cap12_720p4.json
  bench none_480p1 90 bench --e2e --steps 3 --offload none --preset 480p93 --work-dir $W/f --json-out $R/none_480p1.json
  bench cap12_480p1 90 bench --e2e --steps 3 --memory-cap 12 --preset 480p93 --work-dir $W/f --json-out $R/cap12_480p1.json
  bench cap16_720p4 160 bench --e2e --steps 3 --memory-cap 16 --controls edge,vis,depth,seg --work-dir $W/f4 \
    --json-out $R/cap16_720p4.json
  bench cap24_720p1 100 bench --e2e --steps 3 --memory-cap 24 --work-dir $W/f --json-out $R/cap24_720p1.json
  ;;
4)
  # What 1-3 left (2026-12-01): the tiers again now that tight budgets use expandable segments, the cells not
  # reached, the guided-generation and 2-chunk jobs. Run after part 1 on the same machine (folders, cache).
  python3 -c 'import av' || exit 1
  bench cap12_720p1 140 bench --e2e --steps 3 --memory-cap 12 --work-dir $W/f --json-out $R/cap12_720p1.json
  bench cap16_720p1 120 bench --e2e --steps 3 --memory-cap 16 --work-dir $W/f --json-out $R/cap16_720p1.json
  bench cap12_720p4 160 bench --e2e --steps 3 --memory-cap 12 --controls edge,vis,depth,seg --work-dir $W/f4 \
    --json-out $R/cap12_720p4.json
  bench cap16_720p4 160 bench --e2e --steps 3 --memory-cap 16 --controls edge,vis,depth,seg --work-dir $W/f4 \
    --json-out $R/cap16_720p4.json
  bench cap24_720p1 100 bench --e2e --steps 3 --memory-cap 24 --work-dir $W/f --json-out $R/cap24_720p1.json
  bench guided 120 bench --e2e --steps 3 --guided --work-dir $W/f --json-out $R/guided.json
  bench two_chunks 160 bench --e2e --steps 3 --frames 185 --work-dir $W/f --json-out $R/two_chunks.json
  ;;
fa4)
  # FlashAttention-4 arrives in pieces (scripts/fa4_wheels.sh splits its 92 MB library wheel to fit a call):
  # each call carries one of .whl-fa4a and .whl-fa4b; the call that finds both pieces joins and installs them.
  if [ -d .whl-fa4a ] && [ -d .whl-fa4b ]; then
    mkdir -p /tmp/fa4 && cp .whl-fa4a/*.whl .whl-fa4b/*.whl /tmp/fa4/ 2>/dev/null
    cat .whl-fa4a/libs.part.* .whl-fa4b/libs.part.* >/tmp/fa4/nvidia_cutlass_dsl_libs_cu13-4.8.1-cp312-cp312-manylinux_2_28_x86_64.whl
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site /tmp/fa4/*.whl
    python3 -c 'import flash_attn.cute; print("flash-attn-4 imports")' | tee -a "$SUMMARY"
  else
    echo "one piece here; call again carrying the other" | tee -a "$SUMMARY"
  fi
  ;;
*)
  echo "usage: $0 1|2|3|4|fa4" >&2
  exit 2
  ;;
esac
tar czf "$OUT/part${1}.tgz" -C /tmp/results "part${1}"
cat "$SUMMARY"
