#!/usr/bin/env bash
# The dashboard's browser tests: installs what is missing (npm packages from the lock file,
# Debian's chromium when running as root), builds the `scalesense` binary, and runs
# dashboard.test.mjs against `scalesense up` on free ports. Screenshots go to
# $SCALESENSE_SCREENSHOTS, else to a new temporary folder; the test prints which.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "error: the browser tests need Node.js (20 or newer) and npm" >&2
  exit 1
fi

chromium=${CHROMIUM_PATH:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "chromium: not installed, installing Debian's package"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
  else
    echo "error: $chromium is missing; install it with: apt-get install -y chromium" >&2
    exit 1
  fi
fi
export CHROMIUM_PATH=$chromium

cd "$here"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund
fi

if [ -z "${SCALESENSE_BIN:-}" ]; then
  # Incremental: a no-op when the workspace tests already built it.
  (cd "$root" && cargo build --locked -p scalesense)
  target=${CARGO_TARGET_DIR:-target}
  case $target in /*) ;; *) target=$root/$target ;; esac
  SCALESENSE_BIN=$target/debug/scalesense
fi
export SCALESENSE_BIN

exec npm test --silent
