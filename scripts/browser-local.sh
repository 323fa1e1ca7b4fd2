#!/usr/bin/env bash
# Headless Chromium from Debian's packages, for the report's browser test (tests/report/test_report.py): without a
# browser that test is skipped with its reason, so CI installs one first. Idempotent: a machine that already
# has chromium does nothing; one that cannot install it (not root, no apt) says so and goes on, since the
# test then skips rather than fails.
set -eu
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "browser-local: no chromium and no root apt-get here; the browser test will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
chromium --version
