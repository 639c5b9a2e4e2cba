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

clk_tck=$(getconf CLK_TCK)
# CPU seconds of every running PostgreSQL process (backends, WAL writer, …).
# (Processes come and go while this reads: a vanished one is no error.)
postgres_cpu() {
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
    awk -v t="$clk_tck" '$2 == "(postgres)" {s += $14 + $15} END {printf "%.2f", s / t}'
}
# thread_cpu PID: CPU seconds (user + system) process PID has used so far, by
# thread: "async=… store=… other=…". async: actix's workers and acceptor;
# store: the crate's store threads; other: the rest of the process (Argon2,
# the audit writer, threads that have ended).
thread_cpu() {
  local task total
  total=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat")
  for task in /proc/"$1"/task/*; do
    # comm may hold spaces and parentheses: the fields are counted after its ")".
    printf '%s %s\n' "$(cat "$task/comm" 2>/dev/null)" \
      "$(awk '{sub(/^.*\) /, ""); print $12 + $13}' "$task/stat" 2>/dev/null)"
  done | awk -v total="$total" -v t="$clk_tck" '
    $1 ~ /^actix/ {a += $NF} $1 ~ /^rememberme-stor/ {s += $NF}
    END {printf "async=%.2f store=%.2f other=%.2f", a / t, s / t, (total - a - s) / t}'
}

# form_session BASE USER PASSWORD: signs USER in through BASE/login's form
# (its CSRF token and pre-session first); prints the `__Host-session`
# cookie's value the sign-in sets. (USER and PASSWORD as form-encoded.)
form_session() {
  local base=$1 csrf session
  curl -sS -D "$WORK/h-form" -o "$WORK/b-form" "$base/login" || true
  csrf=$(sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' "$WORK/b-form" | head -n1)
  session=$(tr -d '\r' <"$WORK/h-form" | sed -n 's/^[Ss]et-[Cc]ookie: __Host-session=\([^;]*\).*/\1/p' | head -n1)
  curl -sS -o /dev/null -D "$WORK/h-post" -H "Cookie: __Host-session=$session" \
    --data "username=$2&password=$3&csrf_token=$csrf" "$base/login"
  session=$(tr -d '\r' <"$WORK/h-post" | sed -n 's/^[Ss]et-[Cc]ookie: __Host-session=\([^;]*\).*/\1/p' | head -n1)
  [ -n "$session" ] || die "no session from $base/login"
  echo "$session"
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
