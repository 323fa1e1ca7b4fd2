#!/usr/bin/env bash
# FlashAttention-4's wheels for the lent GPU (Python 3.12, x86-64, CUDA 13), in two folders that each fit one
# device call (64 MiB): .whl-fa4a holds the small wheels and the first half of the cutlass-dsl library wheel,
# .whl-fa4b the second half. `bash scripts/gpu_e2e.sh fa4` on the device joins and installs them. Both folders
# must be ignored by git (.git/info/exclude) so that only `carry` sends them.
set -eu
cd "$(dirname "$0")/.."
P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
   --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
   --platform manylinux2014_x86_64"
tmp=$(mktemp -d)
# shellcheck disable=SC2086
python3 -m pip download -q $P -d "$tmp" flash-attn-4==4.0.0b36 nvidia-cutlass-dsl==4.8.1 \
  nvidia-cutlass-dsl-libs-base==4.8.1 nvidia-cutlass-dsl-libs-cu13==4.8.1 'apache-tvm-ffi<0.2,>=0.1.11' \
  torch-c-dlpack-ext 'quack-kernels>=0.5.3'
rm -rf .whl-fa4a .whl-fa4b && mkdir -p .whl-fa4a .whl-fa4b
libs=$(ls "$tmp"/nvidia_cutlass_dsl_libs_cu13-*.whl)
split -n 2 -d "$libs" "$tmp/libs.part."
mv "$tmp/libs.part.00" .whl-fa4a/ && mv "$tmp/libs.part.01" .whl-fa4b/
rm "$libs" && mv "$tmp"/*.whl .whl-fa4a/
for f in .whl-fa4a .whl-fa4b; do grep -qx "/$f/" .git/info/exclude 2>/dev/null || echo "/$f/" >>.git/info/exclude; done
du -sh .whl-fa4a .whl-fa4b
