#!/usr/bin/env bash
# Snakemake and plotly for the lent GPU, whose image lacks them (`cosmos-t2 bench --sweep` runs the real
# workflow there, its report rule included: scripts/gpu_e2e.sh 18), installed for Python 3.12 on x86-64 and
# packed as .smk/site.tar.xz (ignored by git; carry it with .whl). The packages the image already has are
# left out (KINDS.md's list), and so are pulp's CBC solvers for other platforms (Snakemake's default
# scheduler is greedy): 15 MB, where the wheels were 37 MB and, with .whl (PyAV, 35 MB) and the tree, over
# one device call's 64 MiB. connection_pool publishes no wheel: built here (pure Python).
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
P="--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
   --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
   --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64"
python3 -m pip wheel -q --no-deps -w "$tmp/wheels" connection_pool==0.0.3
# shellcheck disable=SC2086
python3 -m pip download -q $P --find-links "$tmp/wheels" -d "$tmp/wheels" snakemake==9.27.1 plotly==7.1.0
mkdir "$tmp/keep"
for wheel in "$tmp"/wheels/*.whl; do
  case $(basename "$wheel") in
  attrs-* | certifi-* | charset_normalizer-* | idna-* | jinja2-* | markupsafe-* | packaging-* | psutil-* | \
    pyyaml-* | requests-* | tabulate-* | typing_extensions-* | urllib3-* | wrapt-*) ;;  # in the image
  *) cp "$wheel" "$tmp/keep/" ;;
  esac
done
# shellcheck disable=SC2086
python3 -m pip install -q --no-deps $P --no-index --no-compile --target "$tmp/site" "$tmp"/keep/*.whl
rm -rf "$tmp"/site/pulp/solverdir/cbc/{osx,win} "$tmp"/site/pulp/solverdir/cbc/linux/{i32,arm64}
rm -rf .smk && mkdir .smk
(cd "$tmp/site" && tar cf - . | xz -T0 -6 >"$OLDPWD/.smk/site.tar.xz")
grep -qx "/.smk/" .git/info/exclude 2>/dev/null || echo "/.smk/" >>.git/info/exclude
du -sh .smk
