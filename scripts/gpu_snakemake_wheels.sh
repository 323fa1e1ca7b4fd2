#!/usr/bin/env bash
# Snakemake for the lent GPU, whose image lacks it (`cosmos-t2 bench --sweep` runs the real workflow there:
# scripts/gpu_e2e.sh 18), as wheels for Python 3.12 on x86-64 in .smk/ (ignored by git; carry it with .whl).
# The packages the image already has are left out (KINDS.md's list), so it stays ~26 MB: with .whl (PyAV) and
# the tree, one device call's 64 MiB. connection_pool publishes no wheel: built here (pure Python).
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip wheel -q --no-deps -w "$tmp" connection_pool==0.0.3
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --find-links "$tmp" -d "$tmp" snakemake==9.27.1
rm -rf .smk && mkdir .smk
for wheel in "$tmp"/*.whl; do
  case $(basename "$wheel") in
  attrs-* | certifi-* | charset_normalizer-* | idna-* | jinja2-* | markupsafe-* | packaging-* | psutil-* | \
    pyyaml-* | requests-* | tabulate-* | typing_extensions-* | urllib3-* | wrapt-*) ;;  # in the image
  *) cp "$wheel" .smk/ ;;
  esac
done
grep -qx "/.smk/" .git/info/exclude 2>/dev/null || echo "/.smk/" >>.git/info/exclude
du -sh .smk
