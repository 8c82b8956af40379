#!/usr/bin/env bash
# Fuzzes the live API against its own OpenAPI document with schemathesis: every check, a bounded
# number of examples per operation, an admin API token, on SQLite and (when SCALESENSE_TEST_PG
# is set) PostgreSQL. Passes only when no answer is a 5xx and every answer matches the document.
#
# The fixture server (examples/serve_fixture.rs) seeds a fresh database per backend and prints
# its port and token. schemathesis is installed from PyPI into a venv under the cargo target
# directory, once. Under CI=true a missing SCALESENSE_TEST_PG fails the run.
#
# Not fuzzed: DELETE /tokens/{id}, because stateful testing would find and revoke the very
# token the run authenticates with, leaving every later request a 401 (tests/api.rs and
# tests/matrix.rs cover revocation); and POST /channels/{id}/test, which delivers a real message
# and answers 502 when the receiver refuses it and 503 on this fixture (it has no outbox worker):
# tests/channels.rs, tests/matrix.rs and the `up` e-mail test (crates/scalesense/tests/up_email.rs)
# cover it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
venv=$target/schemathesis-venv
examples=${SCHEMATHESIS_MAX_EXAMPLES:-20}
# Extra schemathesis options, e.g. SCHEMATHESIS_ARGS="--max-time 300" for a longer hunt.
extra=${SCHEMATHESIS_ARGS:-}
# A safety bound per backend; the run normally ends when the examples are used up.
bound=${SCHEMATHESIS_TIMEOUT:-900}

if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "installing schemathesis into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==4.32.*"
fi

cargo build --locked --quiet -p scalesense-api --example serve_fixture
server=$target/debug/examples/serve_fixture
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -INT "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# run_against LABEL DATABASE
run_against() {
  local label=$1 database=$2
  echo "== schemathesis against $label"
  "$server" --port 0 --database "$database" >"$work/$label.out" 2>"$work/$label.err" &
  pid=$!
  local line=
  for _ in $(seq 1 100); do
    line=$(grep -m1 '^{' "$work/$label.out" || true)
    [ -n "$line" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/$label.err" >&2; return 1; }
    sleep 0.2
  done
  [ -n "$line" ] || { echo "fixture server did not start" >&2; return 1; }
  local port token
  port=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["port"])' "$line")
  token=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["admin_token"])' "$line")
  local status=0
  timeout "$bound" "$venv/bin/schemathesis" --no-color \
    --config-file "$root/crates/api/tests/schemathesis.toml" run \
    --checks all \
    --max-examples "$examples" \
    --workers 1 \
    --seed 20260318 \
    --exclude-path '/api/v1/tokens/{id}' \
    --exclude-path '/api/v1/channels/{id}/test' \
    -H "Authorization: Bearer $token" \
    $extra \
    "http://127.0.0.1:$port/api/v1/openapi.json" || status=$?
  kill -INT "$pid"
  wait "$pid" || true
  pid=
  return "$status"
}

run_against sqlite "$work/fixture.db"
if [ -n "${SCALESENSE_TEST_PG:-}" ]; then
  run_against postgres "$SCALESENSE_TEST_PG"
elif [ "${CI:-}" = "true" ]; then
  echo "error: CI=true but SCALESENSE_TEST_PG is not set: schemathesis must run on PostgreSQL too" >&2
  exit 1
else
  echo "skipped PostgreSQL: SCALESENSE_TEST_PG not set"
fi
echo "schemathesis passed"
