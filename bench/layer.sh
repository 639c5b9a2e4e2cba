#!/usr/bin/env bash
# The layer's cost on identical work (issue 16): `bash bench/layer.sh`.
#
# Three ways of answering the same `GET /` with `hello <name>` as plain
# text, each a release build of an example on a free loopback port:
#   (B) examples/bench_baseline.rs: actix-session's cookie store alone, the
#       session cookie set up as the crate's (encrypted, __Host-session)
#   (S) examples/quickstart.rs, the README's wiring: a signed-in session
#   (R) the same quickstart with only a remember-me cookie, a different valid
#       one each request (lookup, compare-and-swap rotation, audit row, a new
#       session, two cookies)
# measured with wrk -t2 -c16, $DURATION s a case, in $ROUNDS rounds
# (B S R, B S R, ...: a slow minute of the machine hits every case), the
# median round reported, on SQLite (a fresh file) and PostgreSQL (a fresh
# schema in database `test`). The ratios S/B and R/S compare work done in
# the same run on the same machine; absolute figures do not travel.
#
# Writes its table into BENCHMARKS.md between the `layer.sh` markers (and
# bench/report.py, which writes the rest of the file, keeps it). A
# benchmark, not a test: `cargo test` never runs it. About 10 minutes with a
# warm target directory, most of it minting the cookies (R) uses up.
#
# Environment (all optional): CARGO_TARGET_DIR, BENCH_PG_URL (default
# postgres://postgres@127.0.0.1:5432/test?sslmode=disable), BENCH_BACKENDS
# ("sqlite postgres"), BENCH_KEEP=1 (keep the work directory).
source "$(dirname "$0")/common.sh"
DURATION=5      # seconds a case
ROUNDS=3        # rounds of B S R; the median is reported
THREADS=2       # wrk threads
CONNECTIONS=16  # wrk connections
COOKIES=200000  # remember-me cookies minted per backend (R uses each once)

need_tools wrk curl python3
work_dir layer

log "building (release): quickstart, bench_baseline, bench_prepare"
cargo build --release --locked --example quickstart --example bench_baseline
cargo build --release --locked --features testing --example bench_prepare
EX=$CARGO_TARGET_DIR/release/examples
echo "META commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" >>"$RESULTS"
echo "META date=$(date -u '+%Y-%m-%d %H:%M UTC')" >>"$RESULTS"
echo "META nproc=$(nproc)" >>"$RESULTS"

# Starts example $1 with the environment in the remaining arguments; sets
# PORT_OF and PID_OF.
start() {
  local name=$1; shift
  local port; port=$(free_port)
  env PORT="$port" "$@" "$EX/$name" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  PID_OF=$!
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && { PORT_OF=$port; return; }
    sleep 0.1
  done
  die "$name did not start: $(tail -n5 "$WORK/$name.log")"
}

# The session cookie a sign-in at $1 sets (its form's CSRF token first, if any).
session_of() {
  local session
  session=$(form_session "$1" alice alice-password)
  [ "$(curl -sS -H "Cookie: __Host-session=$session" "$1/")" = "hello alice" ] \
    || die "$1/ does not greet alice with the session"
  echo "$session"
}

# One wrk run: case $1 ($2 = mode, $3 = base URL, $5 = the server's pid), for
# backend $BACKEND, round $4. Records wrk's result and the CPU seconds the
# server's threads (and PostgreSQL's processes) used meanwhile.
run() {
  local case=$1 mode=$2 base=$3 round=$4 pid=$5 before pg_before
  before=$(thread_cpu "$pid"); pg_before=$(postgres_cpu)
  env BENCH_MODE="$mode" BENCH_SESSION="${SESSION_FOR[$case]:-}" BENCH_COOKIES="$WORK/cookies-$BACKEND-$round" \
    BENCH_THREADS="$THREADS" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 30s --latency \
    -s "$ROOT/bench/wrk.lua" "$base/" >"$WORK/wrk-$BACKEND-$case-$round" 2>&1
  echo "RUN backend=$BACKEND case=$case round=$round $(grep '^BENCH_RESULT' "$WORK/wrk-$BACKEND-$case-$round")" \
    "$(echo "$before $(thread_cpu "$pid") $pg_before $(postgres_cpu)" | tr '=' ' ' | awk '{
      printf "cpu_async_s=%.2f cpu_store_s=%.2f cpu_other_s=%.2f cpu_db_s=%.2f", $8 - $2, $10 - $4, $12 - $6, $14 - $13}')" \
    >>"$RESULTS"
}

declare -A SESSION_FOR
for BACKEND in $BACKENDS; do
  case $BACKEND in
    sqlite) URL="sqlite://$WORK/quickstart-$BACKEND.db" ;;
    postgres)
      PG_SCHEMA="rm_layer_$$"
      psql -q "$PG_URL" -c "CREATE SCHEMA $PG_SCHEMA" >/dev/null || die "PostgreSQL at $PG_URL is needed"
      sep='?'; case $PG_URL in *\?*) sep='&' ;; esac
      URL="$PG_URL${sep}options=-c%20search_path%3D$PG_SCHEMA" ;;
    *) die "unknown backend $BACKEND" ;;
  esac
  log "$BACKEND: minting $COOKIES remember-me cookies"
  mint_start=$(date +%s)
  "$EX/bench_prepare" mint --database-url "$URL" --count "$COOKIES" --per-user 10 \
    --out "$WORK/cookies-$BACKEND" --threads 8
  echo "META mint_secs_$BACKEND=$(( $(date +%s) - mint_start ))" >>"$RESULTS"
  # A share of the cookies for each round: a cookie presented twice would
  # be a replay (theft), not a sign-in.
  total=$(wc -l <"$WORK/cookies-$BACKEND")
  per_round=$(( (total + ROUNDS - 1) / ROUNDS ))
  for round in $(seq 1 "$ROUNDS"); do
    sed -n "$(( (round - 1) * per_round + 1 )),$(( round * per_round ))p" "$WORK/cookies-$BACKEND" \
      >"$WORK/cookies-$BACKEND-$round"
  done

  start bench_baseline; BASELINE="http://127.0.0.1:$PORT_OF"; BASELINE_PID=$PID_OF
  start quickstart DATABASE_URL="$URL"; QUICKSTART="http://127.0.0.1:$PORT_OF"; QUICKSTART_PID=$PID_OF
  # The minting's writes reach the disk before anything is measured.
  sync; sleep 3
  SESSION_FOR[B]=$(session_of "$BASELINE")
  SESSION_FOR[S]=$(session_of "$QUICKSTART")
  # Warm-up of both servers (not recorded; R's cookies are not spent on it).
  wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -H "Cookie: __Host-session=${SESSION_FOR[B]}" "$BASELINE/" >/dev/null
  wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -H "Cookie: __Host-session=${SESSION_FOR[S]}" "$QUICKSTART/" >/dev/null
  for round in $(seq 1 "$ROUNDS"); do
    log "$BACKEND: round $round of $ROUNDS"
    # A session signed in now: wrk keeps sending the cookie it was given,
    # and one older than the epoch-check interval (60 s) would make every
    # request of (S) a store call that a browser, which takes the
    # refreshed cookie, makes once a minute.
    SESSION_FOR[B]=$(session_of "$BASELINE")
    SESSION_FOR[S]=$(session_of "$QUICKSTART")
    run B session "$BASELINE" "$round" "$BASELINE_PID"
    run S session "$QUICKSTART" "$round" "$QUICKSTART_PID"
    run R remember "$QUICKSTART" "$round" "$QUICKSTART_PID"
  done
  stop_servers
  drop_schema
done

python3 "$ROOT/bench/layer_report.py" "$RESULTS" "$ROOT/BENCHMARKS.md"
