#!/usr/bin/env bash
# The Python packages the lent GPU lacks (PyAV, diffusers, FlashAttention-4 and its CuTe DSL), for Python 3.12
# on x86-64 with CUDA 13, packed to travel in two device calls of at most 64 MiB each:
#   .gpu1/site.tar.xz        every package but the CuTe DSL's libraries (PyAV, diffusers, flash_attn, ...)
#   .gpu1/cutlass.part.00    the first half of the CuTe DSL (nvidia_cutlass_dsl, xz)
#   .gpu2/cutlass.part.01    its second half
# libs-core holds the `cutlass.cute` Python package: without it flash_attn.cute does not import (seen
# 2026-12-01, part 6). As wheels they are 141 MB; installed and xz-packed, 94 MB. The first call can run
# everything but FA4; the call that carries .gpu2 joins the halves (`scripts/gpu_e2e.sh` does both). Both
# folders must be ignored by git (.git/info/exclude) so that only `carry` sends them. Takes ~5 minutes on 2
# cores (xz -9).
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
   --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
   --platform manylinux2014_x86_64"
# shellcheck disable=SC2086
python3 -m pip download -q $P -d "$tmp/wheels" av==19.0.2 diffusers==0.42.1 importlib_metadata zipp \
  flash-attn-4==4.0.0b36 nvidia-cutlass-dsl==4.8.1 nvidia-cutlass-dsl-libs-base==4.8.1 \
  nvidia-cutlass-dsl-libs-core==4.8.1 nvidia-cutlass-dsl-libs-cu13==4.8.1 'apache-tvm-ffi<0.2,>=0.1.11' \
  torch-c-dlpack-ext 'quack-kernels>=0.5.3'
# shellcheck disable=SC2086
python3 -m pip install -q $P --no-index --no-compile --no-cache-dir --ignore-requires-python \
  --target "$tmp/site" "$tmp"/wheels/*.whl
rm -rf .gpu1 .gpu2 && mkdir -p .gpu1 .gpu2
(cd "$tmp/site" && tar cf - --exclude='nvidia_cutlass_dsl*' . | xz -T0 -9 >"$OLDPWD/.gpu1/site.tar.xz")
(cd "$tmp/site" && tar cf - nvidia_cutlass_dsl nvidia_cutlass_dsl*.dist-info nvidia_cutlass_dsl_packages.pth |
  xz -T0 -9e >"$tmp/cutlass.tar.xz")
split -n 2 -d "$tmp/cutlass.tar.xz" "$tmp/cutlass.part."
mv "$tmp/cutlass.part.00" .gpu1/ && mv "$tmp/cutlass.part.01" .gpu2/
for f in .gpu1 .gpu2; do grep -qx "/$f/" .git/info/exclude 2>/dev/null || echo "/$f/" >>.git/info/exclude; done
du -sh .gpu1 .gpu2
