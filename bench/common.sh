# Shared set-up of the benchmark scripts (bench/run.sh, layer.sh, scale.sh):
# sourced, not run. It moves to the repository root and sets ROOT,
# CARGO_TARGET_DIR, PG_URL (BENCH_PG_URL) and BACKENDS (BENCH_BACKENDS), and
# defines the helpers below.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
PG_URL="${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
BACKENDS="${BENCH_BACKENDS:-sqlite postgres}"

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# need_tools TOOL...: dies unless every tool is on the PATH.
need_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (wrk: apt-get install -y wrk)"
  done
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# work_dir NAME: a fresh work directory WORK with an empty RESULTS file;
# servers started into PIDS are stopped, the schema PG_SCHEMA (if set) is
# dropped and WORK removed (kept with BENCH_KEEP=1) when the script exits.
work_dir() {
  WORK=$(mktemp -d "/tmp/rememberme-$1.XXXXXX")
  RESULTS=$WORK/results.txt
  : >"$RESULTS"
  PIDS=()
  PG_SCHEMA=""
  trap cleanup EXIT
}
stop_servers() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
drop_schema() {
  if [ -n "$PG_SCHEMA" ]; then psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS $PG_SCHEMA CASCADE" >/dev/null 2>&1 || true; fi
  PG_SCHEMA=""
}
cleanup() {
  stop_servers
  drop_schema
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
