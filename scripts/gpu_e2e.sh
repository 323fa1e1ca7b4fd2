#!/usr/bin/env bash
# The whole-job measurements of docs/benchmarks.md (issues 17 and 20), on one lent GPU, in parts that fit one
# device call each (10 minutes): `bash scripts/gpu_e2e.sh N`. Parts share the machine's /tmp: the random model
# folders (/tmp/e2e) and the compile cache ($COSMOS_T2_CACHE_DIR) carry over while it stays warm. Every run's
# JSON and log are packed into $OUT/partN.tgz. BUDGET_S bounds a part (default 570 s).
# Packages the machine lacks travel packed by scripts/gpu_wheels.sh: carry ".gpu1" in a machine's first call
# (PyAV, diffusers, half of FlashAttention-4: part 5, 8, 10 or 12) and ".gpu2" in the next (the other half:
# part 6 or 11). 2026-12-02 ran parts 8, 6, 9 on one machine, 10 and 11 on a second, 12 on a third.
# Parts 1-3 (2026-12-01, commit a830db1) installed PyAV and diffusers from .whl/ instead (filled with:
# python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
# --platform manylinux_2_28_x86_64 -d .whl av==19.0.2 diffusers==0.42.1 importlib_metadata zipp).
set -u
export COLUMNS=150 PYTHONUNBUFFERED=1 COSMOS_T2_CACHE_DIR=/tmp/ct2cache PYTHONPATH=/tmp/site:/tmp/site/nvidia_cutlass_dsl/dsl_packages:$PWD
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

unpack() {  # what .gpu1 / .gpu2 carry (scripts/gpu_wheels.sh) into /tmp/site
  mkdir -p /tmp/site /tmp/cutlass
  if [ -d .gpu1 ]; then
    xz -dc .gpu1/site.tar.xz | tar xf - -C /tmp/site && cp .gpu1/cutlass.part.00 /tmp/cutlass/ || return 1
  fi
  if [ -d .gpu2 ]; then
    cat /tmp/cutlass/cutlass.part.00 .gpu2/cutlass.part.01 | xz -dc | tar xf - -C /tmp/site || return 1
  fi
}

install_av() {  # PyAV from the carried .whl/ into /tmp/site, unless a part before on this machine did
  [[ -d /tmp/site/av ]] ||
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/av-*.whl
}

gpu_info() {
  nvidia-smi --query-gpu=name,driver_version,power.limit,memory.total --format=csv,noheader | tee -a "$SUMMARY"
  python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())' | tee -a "$SUMMARY"
}

served_part() {  # ATTN_ARGS...: one distilled job as its own process, then three served (see part 15)
  gpu_info
  export PYTHONFAULTHANDLER=1 XDG_RUNTIME_DIR=/tmp/ct2run
  mkdir -p -m 0700 $XDG_RUNTIME_DIR
  local D="--model-dir $W/d/models --prompt-embeddings $W/d/prompt.safetensors --quiet $*"
  bench distilled_cold 200 bench --e2e --distilled "$@" --work-dir $W/d --json-out $R/cold.json
  bench own_mp4 120 infer $W/d/e2e.jsonl --name e2e_0 -o $W/d/own $D
  served server_mp4_1 150 infer $W/d/e2e.jsonl --name e2e_0 -o $W/d/s1 $D --server
  served server_mp4_2 90 infer $W/d/e2e.jsonl --name e2e_0 -o $W/d/s2 $D --server
  served server_lat_3 90 infer $W/d/e2e.jsonl --name e2e_0 -o $W/d/s3 --latents-only $D --server
  timeout 20 python3 -m cosmos_t2.cli serve --status 2>&1 | tee -a "$SUMMARY"
  timeout 20 python3 -m cosmos_t2.cli serve --stop >/dev/null 2>&1
  find $XDG_RUNTIME_DIR -name '*.log' -exec cp {} "$R/" \; 2>/dev/null
  for f in own s1 s2; do sha256sum $W/d/$f/e2e_0.mp4 2>&1 | tee -a "$SUMMARY"; done
}

served() {  # NAME LIMIT_S ARGS...: a served job; past its limit the server's stacks go to its log
  local name=$1 limit=$2 t0 t1 pid rc
  shift 2
  t0=$(date +%s.%N)
  python3 -m cosmos_t2.cli "$@" >"$R/$name.log" 2>&1 &
  pid=$!
  for _ in $(seq "$limit"); do kill -0 $pid 2>/dev/null || break; sleep 1; done
  if kill -0 $pid 2>/dev/null; then
    echo "$name: past ${limit} s, server stacks to its log" | tee -a "$SUMMARY"
    pkill -ABRT -f "cosmos_t2.cli serve"
    sleep 5
    kill $pid 2>/dev/null
  fi
  wait $pid
  rc=$?
  t1=$(date +%s.%N)
  printf '%-16s rc=%-3s wall=%7.1f s  %s\n' "$name" "$rc" "$(awk "BEGIN{print $t1 - $t0}")" "$*" | tee -a "$SUMMARY"
  grep -v '^ *$' "$R/$name.log" | tail -n 12
}

case ${1:-} in
1)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl ||
    exit 1
  gpu_info
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
5)
  # 2026-12-01, second session: the code changed after parts 1-3 (hashes on a thread, uint8 decode copy,
  # expandable segments under a cap); cuDNN attention (FA4 arrives with part 6).
  unpack || exit 1
  python3 -c 'import av, diffusers' || exit 1
  gpu_info
  # Where a process's start goes: infer's imports, twice (cold then warm file cache), and the heaviest ones.
  for i in 1 2; do
    TIMEFORMAT="imports ($i): %R s"
    { time python3 -X importtime -c 'import torch, cosmos_t2.cli.app, cosmos_t2.job.run, cosmos_t2.service.batch' \
      2>"$R/importtime$i.txt"; } 2>&1 | tee -a "$SUMMARY"
  done
  sort -t'|' -k2 -n "$R/importtime2.txt" | tail -n 8
  bench none_720p1 150 bench --e2e --steps 3 --offload none --work-dir $W/f --json-out $R/none_720p1.json
  bench cap24_720p1 100 bench --e2e --steps 3 --memory-cap 24 --work-dir $W/f --json-out $R/cap24_720p1.json
  bench cap16_720p1 100 bench --e2e --steps 3 --memory-cap 16 --work-dir $W/f --json-out $R/cap16_720p1.json
  bench cap12_720p1 120 bench --e2e --steps 3 --memory-cap 12 --work-dir $W/f --json-out $R/cap12_720p1.json
  bench guided 100 bench --e2e --steps 3 --guided --work-dir $W/f --json-out $R/guided.json
  bench two_chunks 150 bench --e2e --steps 3 --frames 185 --work-dir $W/f --json-out $R/two_chunks.json
  ;;
6)
  # FlashAttention-4 joined and checked against cuDNN, and a 3-step job (it compiles FA4's graphs into the cache).
  unpack || exit 1
  python3 - <<'PY' 2>&1 | tee -a "$SUMMARY"
import torch
from cosmos_t2.model.attention import attention, fa4_unavailable_reason
print("fa4:", fa4_unavailable_reason() or "available")
q, k, v = (torch.randn(1, 4096, 16, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
ref = attention(q.double(), k.double(), v.double(), "math")
for name in ("fa4", "cudnn"):
    out = attention(q, k, v, name).double()
    print(name, "relative error", f"{((out - ref).norm() / ref.norm()).item():.2e}")
PY
  bench fa4_720p1 300 bench --e2e --steps 3 --offload none --work-dir $W/f --json-out $R/fa4_720p1.json
  ;;
9)
  # The 35-step job with FlashAttention-4 (part 6 unpacked it and compiled its graphs into the cache), then
  # diffusers' step eager and compiled in the same process.
  python3 -c 'import av, diffusers, flash_attn.cute' || exit 1
  bench full_35 560 bench --e2e --compare diffusers --warmup 1 --iters 3 --work-dir $W/f --json-out $R/full_35.json
  ;;
7)
  # Four controls and 480p at each cap (cuDNN, as part 5's column, though FA4 is installed by now).
  python3 -c 'import av' || exit 1
  A="--steps 3 --attn-backend cudnn"
  bench none_720p4 200 bench --e2e $A --offload none --controls edge,vis,depth,seg --work-dir $W/f4 \
    --json-out $R/none_720p4.json
  for cap in 24 16 12; do
    bench cap${cap}_720p4 140 bench --e2e $A --memory-cap $cap --controls edge,vis,depth,seg --work-dir $W/f4 \
      --json-out $R/cap${cap}_720p4.json
  done
  bench none_480p1 80 bench --e2e $A --offload none --preset 480p93 --work-dir $W/f --json-out $R/none_480p1.json
  for cap in 24 16 12; do
    bench cap${cap}_480p1 80 bench --e2e $A --memory-cap $cap --preset 480p93 --work-dir $W/f \
      --json-out $R/cap${cap}_480p1.json
  done
  ;;
8)
  # 2026-12-02, first call of the session (carry .gpu1): unpack PyAV, diffusers and half of FlashAttention-4
  # (part 6, next, carries the other half), and the 2-chunk job after the fix that frees the first chunk's video.
  unpack || exit 1
  python3 -c 'import av, diffusers' || exit 1
  gpu_info
  bench two_chunks 150 bench --e2e --steps 3 --frames 185 --work-dir $W/f --json-out $R/two_chunks.json
  ;;
10)
  # 2026-12-02, on a fresh machine (carry .gpu1): unpack PyAV, diffusers and half of FlashAttention-4.
  unpack || exit 1
  python3 -c 'import av, diffusers' || exit 1
  gpu_info
  ;;
11)
  # Then (carry .gpu2): FlashAttention-4 complete; the distilled edge model through every way a user runs it.
  unpack || exit 1
  python3 -c 'import av, flash_attn.cute' || exit 1
  D="--model-dir $W/d/models --prompt-embeddings $W/d/prompt.safetensors --quiet"
  # cold compile caches (inductor's and FA4's), then plain `infer` to an mp4 with both warm
  bench distilled_cold 200 bench --e2e --distilled --work-dir $W/d --json-out $R/distilled_cold.json
  bench distilled_infer 120 infer $W/d/e2e.jsonl --name e2e_0 -o $W/d/infer $D
  cp $W/d/infer/e2e_0.json "$R/distilled_infer_sidecar.json" 2>/dev/null
  # The workflow's diffuse command (--latents-only), as its own process, then through the server four times
  bench diffuse_own 120 infer $W/d/e2e.jsonl --name e2e_0 -o $W/d/own --latents-only $D
  cp $W/d/own/e2e_0.json "$R/diffuse_own_sidecar.json" 2>/dev/null
  for i in 1 2 3 4; do
    bench diffuse_server$i 120 infer $W/d/e2e.jsonl --name e2e_0 -o $W/d/server$i --latents-only $D --server
    cp $W/d/server$i/e2e_0.json "$R/diffuse_server${i}_sidecar.json" 2>/dev/null
  done
  python3 -m cosmos_t2.cli serve --status | tee -a "$SUMMARY"
  python3 -m cosmos_t2.cli serve --stop >/dev/null
  cp /tmp/cosmos-t2-*/*.log "$R/" 2>/dev/null
  cmp $W/d/own/e2e_0.latents.safetensors $W/d/server4/e2e_0.latents.safetensors && echo "server latents = own" |
    tee -a "$SUMMARY"
  bench distilled_x4 200 bench --e2e --distilled --jobs 4 --work-dir $W/d --json-out $R/distilled_x4.json
  ;;
12)
  # Are a job's latents the same bytes in two processes, and on the server? (carry .gpu1; cuDNN attention, 480p)
  unpack || exit 1
  D="--model-dir $W/q/models --prompt-embeddings $W/q/prompt.safetensors --quiet --latents-only"
  bench distilled_480p 200 bench --e2e --distilled --preset 480p93 --work-dir $W/q --json-out $R/distilled_480p.json
  for run in own1 own2 server1 server2; do
    case $run in server*) S=--server ;; *) S= ;; esac
    bench q_$run 100 infer $W/q/e2e.jsonl --name e2e_0 -o $W/q/$run $D $S
  done
  python3 -m cosmos_t2.cli serve --stop >/dev/null
  python3 - "$W/q" <<'PY' 2>&1 | tee -a "$SUMMARY"
import sys
from pathlib import Path
from safetensors.torch import load_file
root = Path(sys.argv[1])
runs = {r: load_file(root / r / "e2e_0.latents.safetensors") for r in ("own1", "own2", "server1", "server2")}
for a, b in (("own1", "own2"), ("server1", "server2"), ("own1", "server1"), ("own1", "server2")):
    x, y = runs[a]["chunk_0"], runs[b]["chunk_0"]
    d = (x - y).abs()
    print(f"{a} vs {b}: equal {bool((x == y).all())}, max |diff| {d.max().item():.3e}, "
          f"relative {((x - y).norm() / x.norm()).item():.3e}, differing {(d > 0).float().mean().item():.2%}")
PY
  ;;
13)
  # 2026-12-06 (issue 28), a fresh machine, carry .whl (PyAV 18.1.0 alone: no FA4, so cuDNN attention): the
  # pinned encoder on this host's CPU, then deterministic mode at full size on the distilled edge model.
  install_av || exit 1
  gpu_info
  echo "cpu: $(nproc) cores, $(grep -o -w 'avx512f\|avx2\|sse4_2' /proc/cpuinfo | sort -u | tr '\n' ' ')" |
    tee -a "$SUMMARY"
  python3 scripts/encode_check.py --time | tee -a "$SUMMARY"
  # The tiny CPU job of tests/test_reproducible.py on this host's CPU (another vendor or SIMD level than the
  # dev machine's), with 1 thread and with every core: its identities should be the recorded ones.
  for threads in 1 "$(nproc)"; do
    rm -rf /tmp/cpu_job && CUDA_VISIBLE_DEVICES= OMP_NUM_THREADS=$threads timeout 120 python3 -m cosmos_t2.cli \
      infer examples/robot/edge.json --tiny --device cpu --quiet --set num_steps=2 -o /tmp/cpu_job >"$R/cpu_$threads.log" 2>&1
    python3 -c "import json, sys; i = json.load(open('/tmp/cpu_job/robot_edge.json'))['identity']
print('cpu job, $threads threads:', ' '.join(f'{k[:-7]}={v[:12]}' for k, v in i.items()))" 2>&1 | tee -a "$SUMMARY"
  done
  D="--model-dir $W/d/models --prompt-embeddings $W/d/prompt.safetensors --quiet --attn-backend cudnn"
  bench distilled_cold 200 bench --e2e --distilled --attn-backend cudnn --work-dir $W/d --json-out $R/cold.json
  for run in det1 det2 def1 def2; do
    flag=--no-deterministic && [[ $run == det* ]] && flag=--deterministic
    bench "$run" 120 infer $W/d/e2e.jsonl --name e2e_0 -o $W/d/$run $D $flag
    cp $W/d/$run/e2e_0.json "$R/${run}_sidecar.json" 2>/dev/null
  done
  bench reproduce 120 reproduce $W/d/det1/e2e_0.json -o $W/d/again
  python3 scripts/identity_table.py $W/d/det1 $W/d/det2 $W/d/again $W/d/def1 $W/d/def2 | tee -a "$SUMMARY"
  ;;
14)
  # Then the 35-step model in deterministic mode against the default, 8 steps a job (carry .whl: a machine that
  # went back between the calls starts bare).
  install_av || exit 1
  gpu_info
  F="--model-dir $W/f/models --prompt-embeddings $W/f/prompt.safetensors --quiet --attn-backend cudnn"
  bench full_cold 200 bench --e2e --steps 3 --attn-backend cudnn --work-dir $W/f --json-out $R/full_cold.json
  for run in det1 def1 det2 def2; do
    flag=--no-deterministic && [[ $run == det* ]] && flag=--deterministic
    bench "full_$run" 150 infer $W/f/e2e.jsonl --name e2e_0 -o $W/f/$run $F $flag --set num_steps=8
    cp $W/f/$run/e2e_0.json "$R/full_${run}_sidecar.json" 2>/dev/null
  done
  python3 scripts/identity_table.py $W/f/det1 $W/f/det2 $W/f/def1 $W/f/def2 | tee -a "$SUMMARY"
  ;;
15)
  # 2026-12-07 (issue 31): does the served path finish at full size? A fresh machine, carry .whl (PyAV alone,
  # cuDNN attention). The distilled edge model as its own process, then three jobs through `infer --server`
  # (two to an mp4, one latents-only). A job that runs past its limit gets the server's Python stacks written
  # into the server log (PYTHONFAULTHANDLER, then SIGABRT to the server) before the client is stopped.
  install_av || exit 1
  served_part --attn-backend cudnn
  ;;
16)
  # The same with FlashAttention-4, as the 2026-12-06 run that did not finish (carry .gpu1 in a call with
  # `unpack-only`, then .gpu2 with 16).
  unpack || exit 1
  python3 -c 'import av, flash_attn.cute' || exit 1
  served_part
  ;;
17)
  # 2026-12-07 (issue 29): the host memory (peak RSS) of each GPU stage's process at full size, what a SLURM
  # request's mem_mb must cover: the distilled edge job to an mp4, the workflow's diffuse (latents only) and
  # its render. A fresh machine, carry .whl (PyAV; cuDNN attention).
  install_av || exit 1
  gpu_info
  D="--model-dir $W/d/models --prompt-embeddings $W/d/prompt.safetensors --quiet --attn-backend cudnn"
  bench distilled_cold 200 bench --e2e --distilled --attn-backend cudnn --work-dir $W/d --json-out $R/cold.json
  rss() {  # NAME ARGS...: the process's peak RSS (its children's included) in MiB
    local name=$1
    shift
    python3 - "$name" "$@" <<'PY' 2>&1 | tail -n 3 | tee -a "$SUMMARY"
import resource, subprocess, sys
name, args = sys.argv[1], sys.argv[2:]
proc = subprocess.run([sys.executable, "-m", "cosmos_t2.cli", *args], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"{name}: rc={proc.returncode} peak RSS {peak:.0f} MiB ({' '.join(args[:1])})")
if proc.returncode:
    print(proc.stderr[-800:])
PY
  }
  rss infer_mp4 infer $W/d/e2e.jsonl --name e2e_0 -o $W/d/m1 $D
  rss diffuse infer $W/d/e2e.jsonl --name e2e_0 -o $W/d/m2 --latents-only $D
  rss render render $W/d/m2/e2e_0.latents.safetensors -o $W/d/m2/e2e_0.mp4 --model-dir $W/d/models --device cuda
  ;;
18)
  # 2026-12-07 (issue 31): the full-size sweep through the real workflow (`bench --sweep`: 2 specs x 4 control
  # weights, the distilled edge model, the per-GPU server, every rule, Snakemake's scheduling included). A fresh
  # machine; carry .whl (PyAV) and .smk (Snakemake and plotly: scripts/gpu_snakemake_wheels.sh). The rules
  # call `cosmos-t2`, which the image does not install: a shim on PATH runs this tree's CLI.
  install_av || exit 1
  [[ -d /tmp/site/snakemake ]] || xz -dc .smk/site.tar.xz | tar xf - -C /tmp/site || exit 1
  mkdir -p /tmp/bin && printf '#!/bin/sh\nexec python3 -m cosmos_t2.cli "$@"\n' >/tmp/bin/cosmos-t2 &&
    chmod +x /tmp/bin/cosmos-t2 && export PATH=/tmp/bin:$PATH
  gpu_info
  # shellcheck disable=SC2086  # SWEEP_ARGS: e.g. "--control-weights 0.5,1.0" for the 4-job grid
  bench sweep_distilled 560 bench --sweep --distilled ${SWEEP_ARGS:-} --work-dir $W/s --json-out $R/sweep_distilled.json
  cp $W/s/snakemake.log "$R/" 2>/dev/null
  cp -r $W/s/results/local-gpu/logs $W/s/results/local-gpu/benchmarks "$R/" 2>/dev/null
  ;;
unpack-only)
  unpack || exit 1
  exit 0
  ;;
*)
  echo "usage: $0 1|2|3|5|6|7|8|9|10|11|12|13|14|15|16|17|unpack-only" >&2
  exit 2
  ;;
esac
tar czf "$OUT/part${1}.tgz" -C /tmp/results "part${1}"
cat "$SUMMARY"
