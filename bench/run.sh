#!/usr/bin/env bash
# The benchmark harness: one command, `bash bench/run.sh`.
#
# Builds the release binary and the helper example, then for SQLite (a fresh
# temp file) and PostgreSQL (a fresh schema in database `test` on
# 127.0.0.1:5432) starts `rememberme serve` on a free loopback port and
# measures with wrk, -t2 -c64, 10 s per case:
#   (a) GET /static/style.css         no authentication, no database: baseline
#   (b) GET /  with a session cookie  the signed-in hot path
#   (c) GET /  with only a remember-me cookie, a different valid one each time
#   (d) POST /login with the right password (Argon2id), against the ceiling
#       "cores / one verification's time"
#   (e) (b) while (d) runs at full load beside it (two wrk processes)
# plus the server's peak resident memory, then short perf profiles of (a)-(e)
# (not during the measured runs), then (a) and (b) counted in instructions
# under valgrind's callgrind. Writes BENCHMARKS.md at the repository root and
# prints its table.
#
# It is a benchmark, not a test: `cargo test` never runs it. Traffic goes to
# 127.0.0.1 only; durations and loop bounds are fixed. Takes about 20
# minutes with a warm target directory, most of it minting the cookies (c)
# uses up (a clean release build adds about 5).
#
# Environment (all optional):
#   CARGO_TARGET_DIR  where cargo builds (default: target/)
#   BENCH_PG_URL      PostgreSQL server URL (default postgres://postgres@127.0.0.1:5432/test?sslmode=disable:
#                     TLS off on loopback, as for a database on the same host)
#   BENCH_BACKENDS    "sqlite postgres" (default), or one of them
#   BENCH_KEEP=1      keep the work directory (logs, wrk output, perf data)
source "$(dirname "$0")/common.sh"

# Fixed parameters of every measured case.
DURATION=10          # seconds per case
THREADS=2            # wrk threads
CONNECTIONS=64       # wrk connections
WARMUP=3             # seconds of unrecorded warm-up per server
PROFILE_SECS=6       # seconds of each perf profile
STORM_LEAD=1         # seconds the sign-in storm of (e) runs before (b) starts
# Remember-me cookies minted per backend, each used once: for (c) and for its
# profile run, more than a run uses (with group commit, quick runs here saw up
# to ~25,000 re-authentications/s on SQLite and ~16,000 on PostgreSQL). A run
# that runs out is reported invalid, never replays one.
declare -A COOKIES_C=([sqlite]=400000 [postgres]=300000)
declare -A COOKIES_PROFILE=([sqlite]=200000 [postgres]=150000)
# Minting threads: SQLite serializes writers anyway; PostgreSQL commits
# (one fsync each) go faster with more in flight.
declare -A MINT_THREADS=([sqlite]=4 [postgres]=16)
PER_USER=10          # cookies per cookie-holder user (cap is 20 per user)
USERNAME=bench
PASSWORD=bench-password-1
# The sign-in storms of (d) and (e) spread over this many accounts
# (bench-0 … bench-N-1, same password), as a storm of real users would.
# (On the 2-core machine of 2026-12-02 the rate was the same on one account
# as on 32: 140 and 135 sign-ins/s in a quick check.)
ACCOUNTS=32


# The load generator comes from Debian's packages.
if ! command -v wrk >/dev/null 2>&1; then
  echo "bench: installing wrk" >&2
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null || true
fi
for tool in wrk curl python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (wrk: apt-get install -y wrk)"
done

START_TIME=$(date +%s)
WORK=$(mktemp -d /tmp/rememberme-bench.XXXXXX)
RESULTS=$WORK/results.txt
: >"$RESULTS"
SERVER_PID=""
SAMPLER_PID=""
PG_SCHEMA=""

cleanup() {
  if [ -n "$SAMPLER_PID" ]; then kill "$SAMPLER_PID" 2>/dev/null || true; fi
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ -n "$PG_SCHEMA" ]; then psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS $PG_SCHEMA CASCADE" >/dev/null 2>&1 || true; fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

meta() { echo "META $1=$2" >>"$RESULTS"; }

# ---------------------------------------------------------------- build
log "building (release): the binary and examples/bench_prepare.rs"
BUILD_START=$(date +%s)
cargo build --release --locked --bin rememberme
cargo build --release --locked --features testing --example bench_prepare
meta build_secs $(( $(date +%s) - BUILD_START ))
BIN=$CARGO_TARGET_DIR/release/rememberme
PREP=$CARGO_TARGET_DIR/release/examples/bench_prepare

# ---------------------------------------------------------------- machine
meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta nproc "$(nproc)"
meta memory "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
meta cpu "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
meta kernel "$(uname -r)"
meta rustc "$(rustc -V)"
meta crate "$(awk -F'"' '/^version/ {print $2; exit}' Cargo.toml)"
meta commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
meta wrk "$(wrk -v 2>&1 | head -n1 | sed 's/ Copyright.*//')"
meta postgres "$(psql -At "$PG_URL" -c 'SHOW server_version' 2>/dev/null || echo unavailable)"
meta duration "$DURATION"
meta threads "$THREADS"
meta connections "$CONNECTIONS"

# Counted during the profiles: how the server's threads hand work around
# (context switches, futex), SQLite's locking (fcntl), I/O, busy-handler
# sleeps (clock_nanosleep), spinning (sched_yield).
SYSCALL_EVENTS=context-switches
for sc in futex sched_yield clock_nanosleep fcntl pread64 pwrite64 fdatasync fsync sendto recvfrom write; do
  SYSCALL_EVENTS+=",syscalls:sys_enter_$sc"
done
PERF=0
if command -v perf >/dev/null 2>&1 && perf record -q -e cpu-clock -o /dev/null -- true >/dev/null 2>&1; then
  PERF=1
  perf stat -e "$SYSCALL_EVENTS" -o /dev/null -- true >/dev/null 2>&1 || SYSCALL_EVENTS=context-switches
fi
meta perf "$PERF"

# ---------------------------------------------------------------- helpers
# CPU seconds (user + system) the server process has used so far.
server_cpu() { awk -v t="$clk_tck" '{printf "%.2f", ($14 + $15) / t}' "/proc/$SERVER_PID/stat"; }
# CPU seconds of this shell's finished children (wrk, curl), into CHILD_CPU:
# `times` must run in this shell, not in a $(…) subshell, whose children are
# not ours.
children_cpu() {
  times >"$WORK/times"
  CHILD_CPU=$(awk 'NR == 2 {
    n = 0
    for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); n += p[1] * 60 + p[2] }
    printf "%.2f", n
  }' "$WORK/times")
}
# Jiffies of the whole machine: busy in processes (user, nice, system), busy
# in interrupts (irq, softirq: loopback TCP, charged to no process), total.
machine_jiffies() { awk '/^cpu / {print $2+$3+$4, $7+$8, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }

# This machine is shared (other builds may run on it). Before each
# measurement, wait until it is quiet: under 10 % busy over one second, at
# most 60 s per case and 180 s per run; a case that ran on a busy machine is
# flagged in BENCHMARKS.md (its "other CPU" column shows how busy).
QUIET_BUDGET=180
wait_quiet() {
  local waited=0 a b busy
  QUIET=no
  while :; do
    a=$(machine_jiffies)
    sleep 1
    b=$(machine_jiffies)
    busy=$(awk -v a="$a" -v b="$b" 'BEGIN {split(a, x, " "); split(b, y, " ");
      printf "%d", 100 * (y[1] + y[2] - x[1] - x[2]) / ((y[3] - x[3]) > 0 ? (y[3] - x[3]) : 1)}')
    if [ "$busy" -lt 10 ]; then QUIET=yes; break; fi
    if [ "$waited" -ge 60 ] || [ "$QUIET_BUDGET" -le 0 ]; then break; fi
    [ "$waited" = 0 ] && echo "  machine busy (${busy}%): waiting for it to be quiet" >&2
    waited=$((waited + 1))
    QUIET_BUDGET=$((QUIET_BUDGET - 1))
  done
  QUIET_WAITED=$waited
}

# ---------------------------------------------------------------- Argon2
log "timing one Argon2id verification (default parameters, release)"
wait_quiet
ARGON=$("$PREP" argon2 30)
echo "$ARGON" >&2
meta argon2_median_ms "$(sed -n 's/.*median=\([0-9.]*\).*/\1/p' <<<"$ARGON")"
meta argon2_mean_ms "$(sed -n 's/.*mean=\([0-9.]*\).*/\1/p' <<<"$ARGON")"
meta argon2_min_ms "$(sed -n 's/.*min=\([0-9.]*\).*/\1/p' <<<"$ARGON")"
meta argon2_quiet "$QUIET"
meta argon2_parallel_per_s "$(sed -n 's/.*per_s=\([0-9.]*\).*/\1/p' <<<"$ARGON")"

# Samples the server's VmRSS and thread count every 100 ms, tagged with the
# case running now.
start_sampler() {
  echo idle >"$WORK/case"
  (
    while kill -0 "$SERVER_PID" 2>/dev/null; do
      line=$(awk '/^VmRSS:/ {r = $2} /^Threads:/ {t = $2} END {if (r) print r, t}' \
        "/proc/$SERVER_PID/status" 2>/dev/null || true)
      [ -n "$line" ] && echo "$(<"$WORK/case") $line" >>"$WORK/rss-$BACKEND.txt"
      sleep 0.1
    done
  ) &
  SAMPLER_PID=$!
}

# GET /login: sets LOGIN_SESSION and LOGIN_CSRF (one session cookie jar) and
# LOGIN_BODY, the form of a right sign-in with that CSRF token.
login_form() {
  curl -sS -D "$WORK/h-form" -o "$WORK/b-form" "$BASE/login"
  LOGIN_CSRF=$(sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' "$WORK/b-form" | head -n1)
  LOGIN_SESSION=$(tr -d '\r' <"$WORK/h-form" | sed -n 's/^[Ss]et-[Cc]ookie: __Host-session=\([^;]*\).*/\1/p' | head -n1)
  [ -n "$LOGIN_CSRF" ] && [ -n "$LOGIN_SESSION" ] || die "GET /login gave no csrf_token or session cookie"
  LOGIN_BODY="username=$USERNAME&password=$PASSWORD&csrf_token=$LOGIN_CSRF&next=%2F"
  STORM_BODY="username=$USERNAME-{account}&password=$PASSWORD&csrf_token=$LOGIN_CSRF&next=%2F"
}

# Signs in once over HTTP and sets SESSION to the session cookie a browser
# would hold on its next page: the one from the sign-in's 303, updated by the
# first GET / (which adds the CSRF token of the page's forms). Done right
# before each case that uses it: the session records when its auth epoch was
# last checked, and after --epoch-check-secs (60 s) every request with that
# cookie would check it again in the database.
sign_in() {
  login_form
  local status
  status=$(curl -sS -o /dev/null -w '%{http_code}' -D "$WORK/h-post" \
    -H "Cookie: __Host-session=$LOGIN_SESSION" --data "$LOGIN_BODY" "$BASE/login")
  [ "$status" = 303 ] || die "sign-in answered $status, not 303"
  SESSION=$(tr -d '\r' <"$WORK/h-post" | sed -n 's/^[Ss]et-[Cc]ookie: __Host-session=\([^;]*\).*/\1/p' | head -n1)
  [ -n "$SESSION" ] || die "sign-in set no session cookie"
  status=$(curl -sS -o "$WORK/b-home" -w '%{http_code}' -D "$WORK/h-home" \
    -H "Cookie: __Host-session=$SESSION" "$BASE/")
  [ "$status" = 200 ] || die "GET / with the new session answered $status"
  grep -q "Signed in as" "$WORK/b-home" || die "GET / does not show the signed-in page"
  local updated
  updated=$(tr -d '\r' <"$WORK/h-home" | sed -n 's/^[Ss]et-[Cc]ookie: __Host-session=\([^;]*\).*/\1/p' | head -n1)
  [ -n "$updated" ] && SESSION=$updated
  # The cookie used by the case must now be stable: no Set-Cookie per request.
  if curl -sS -o /dev/null -D - -H "Cookie: __Host-session=$SESSION" "$BASE/" | grep -qi '^set-cookie: __Host-session='; then
    meta "session_cookie_reissued_$BACKEND" yes
  fi
  # A fresh sign-in form for the cases that post it.
  login_form
}

# Sets CMD to the wrk command line of a case, with its script's environment.
wrk_cmd() {
  local case=$1 secs=$2
  case $case in
    a) CMD=(env BENCH_MODE=plain) ;;
    b | e) CMD=(env BENCH_MODE=session "BENCH_SESSION=$SESSION") ;;
    c) CMD=(env BENCH_MODE=remember "BENCH_COOKIES=$COOKIE_FILE" "BENCH_THREADS=$THREADS") ;;
    d | e_storm) CMD=(env BENCH_MODE=login "BENCH_SESSION=$LOGIN_SESSION" "BENCH_BODY=$STORM_BODY" "BENCH_ACCOUNTS=$ACCOUNTS") ;;
  esac
  CMD+=(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${secs}s" --timeout 30s --latency -s "$ROOT/bench/wrk.lua")
  case $case in
    a) CMD+=("$BASE/static/style.css") ;;
    b | c | e) CMD+=("$BASE/") ;;
    d | e_storm) CMD+=("$BASE/login") ;;
  esac
}

# PostgreSQL's cluster-wide counters: commits in database `test`, WAL
# flushes (fsync), WAL records. Zeros when this is not the PostgreSQL case.
pg_counters() {
  if [ "$BACKEND" = postgres ]; then
    psql -At -F' ' "$PG_URL" -c "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
      wal_sync, wal_records FROM pg_stat_wal" 2>/dev/null || echo "0 0 0"
  else
    echo "0 0 0"
  fi
}

# Counters around one measurement: CPU of the server, of PostgreSQL, of the
# load generator, and of the whole machine (the rest is "other").
case_begin() {
  wait_quiet
  echo "$1" >"$WORK/case"
  C0_PGC=$(pg_counters)
  children_cpu
  C0_SERVER=$(server_cpu); C0_PG=$(postgres_cpu); C0_CHILD=$CHILD_CPU; C0_M=$(machine_jiffies)
}
case_end() {
  echo idle >"$WORK/case"
  children_cpu
  C1_SERVER=$(server_cpu); C1_PG=$(postgres_cpu); C1_CHILD=$CHILD_CPU; C1_M=$(machine_jiffies)
  C1_PGC=$(pg_counters)
}

# record CASE WRK_OUTPUT: appends the case's result line.
record() {
  local case=$1 file=$2 line
  line=$(grep '^BENCH_RESULT' "$file" | sed 's/^BENCH_RESULT //') || die "no result in $file: $(tail -n3 "$file")"
  echo "RESULT backend=$BACKEND case=$case $line $(awk \
    -v s0="$C0_SERVER" -v s1="$C1_SERVER" -v p0="$C0_PG" -v p1="$C1_PG" \
    -v c0="$C0_CHILD" -v c1="$C1_CHILD" -v m0="$C0_M" -v m1="$C1_M" -v t="$clk_tck" -v NCPU="$(nproc)" 'BEGIN {
      split(m0, x, " "); split(m1, y, " ")
      busy = (y[1] - x[1]) / t; irq = (y[2] - x[2]) / t; total = (y[3] - x[3]) / t
      other = busy - (s1 - s0) - (p1 - p0) - (c1 - c0); if (other < 0) other = 0
      printf "wall_s=%.2f server_cpu_s=%.2f postgres_cpu_s=%.2f client_cpu_s=%.2f irq_cpu_s=%.2f other_cpu_s=%.2f machine_busy_pct=%.0f",
        total / NCPU, s1 - s0, p1 - p0, c1 - c0, irq, other, 100 * (busy + irq) / (total > 0 ? total : 1)
    }') $(awk -v a="$C0_PGC" -v b="$C1_PGC" 'BEGIN {split(a, x, " "); split(b, y, " ");
      printf "pg_commits=%d pg_wal_syncs=%d pg_wal_records=%d", y[1] - x[1], y[2] - x[2], y[3] - x[3]}') \
    quiet=$QUIET quiet_wait_s=$QUIET_WAITED" >>"$RESULTS"
  echo "  $BACKEND ($case): $line" >&2
}

# One measured case.
run_case() {
  local case=$1
  case_begin "$case"
  wrk_cmd "$case" "$DURATION"
  "${CMD[@]}" >"$WORK/wrk-$BACKEND-$case.txt" 2>&1 \
    || die "wrk failed for $BACKEND ($case): $(tail -n3 "$WORK/wrk-$BACKEND-$case.txt")"
  case_end
  record "$case" "$WORK/wrk-$BACKEND-$case.txt"
}

# (e): the storm (d) starts first, (b) runs beside it for DURATION seconds.
run_case_e() {
  case_begin e
  wrk_cmd e_storm $((DURATION + 2 * STORM_LEAD))
  "${CMD[@]}" >"$WORK/wrk-$BACKEND-e_storm.txt" 2>&1 &
  local storm=$!
  sleep "$STORM_LEAD"
  wrk_cmd e "$DURATION"
  "${CMD[@]}" >"$WORK/wrk-$BACKEND-e.txt" 2>&1 || die "wrk failed in (e)"
  wait "$storm" || die "storm wrk failed in (e): $(tail -n3 "$WORK/wrk-$BACKEND-e_storm.txt")"
  case_end
  record e "$WORK/wrk-$BACKEND-e.txt"
  record e_storm "$WORK/wrk-$BACKEND-e_storm.txt"
}

# perf, whole machine, during a short repeat of a case; the measured numbers
# above come from runs without perf.
profile_case() {
  local case=$1 data="$WORK/perf-$BACKEND-$1.data" storm=""
  log "$BACKEND: profiling ($case) for ${PROFILE_SECS} s (perf, whole machine)"
  wait_quiet
  if [ "$case" = e ]; then
    wrk_cmd e_storm $((PROFILE_SECS + 2))
    "${CMD[@]}" >/dev/null 2>&1 &
    storm=$!
    sleep 1
  fi
  wrk_cmd "$case" "$PROFILE_SECS"
  # Inside the profile, perf stat counts the server's context switches and
  # system calls while wrk runs (divided by wrk's request count later).
  perf record -q -a -e cpu-clock -F 499 -o "$data" -- \
    perf stat -x, -o "$WORK/syscalls-$BACKEND-$case.txt" -p "$SERVER_PID" -e "$SYSCALL_EVENTS" -- \
    "${CMD[@]}" >"$WORK/wrk-$BACKEND-profile-$case.txt" 2>&1 || true
  if [ -n "$storm" ]; then wait "$storm" || true; fi
  [ -s "$data" ] || return 0
  # Three views: CPU by thread name (who), by thread name and binary (in
  # the kernel or in user code), and the server's hottest functions (what).
  {
    echo "### CPU by thread name (whole machine, share of all samples)"
    perf report -q -i "$data" --stdio --no-children --sort comm 2>/dev/null | grep -v '^$' | head -n 10 || true
    echo "### CPU by thread name and binary (whole machine)"
    perf report -q -i "$data" --stdio --no-children --sort comm,dso 2>/dev/null | grep -v '^$' | head -n 12 || true
    echo "### server functions (share of the server's samples)"
    perf report -q -i "$data" --stdio --no-children --pid "$SERVER_PID" --percentage relative \
      --sort dso,sym 2>/dev/null | grep -v '^$' >"$WORK/symbols-$BACKEND-$case.txt" || true
    head -n 25 "$WORK/symbols-$BACKEND-$case.txt"
  } >"$WORK/profile-$BACKEND-$case.txt"
  rm -f "$data"
}

# launch_server URL LOG SECS [COMMAND…]: `rememberme serve` on a free
# loopback port with the settings of every case, run through COMMAND (`env
# VAR=VALUE…`, or valgrind); waits at most SECS for /healthz to answer 200
# and fails if it does not. Defaults except: no per-IP sign-in limit (all
# load comes from one address), no periodic purge during the run, a key file
# in the work directory.
launch_server() {
  local url=$1 logfile=$2 secs=$3 port
  shift 3
  port=$(free_port)
  BASE=http://127.0.0.1:$port
  log "$BACKEND: starting rememberme serve on $BASE${*:+ through $*}"
  "$@" "$BIN" serve --bind "127.0.0.1:$port" --database-url "$url" \
    --ip-attempts-per-minute 0 --purge-interval-secs 0 \
    --session-key-file "$WORK/session-$BACKEND.key" \
    >"$logfile" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 $((secs * 10))); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz" || true)" = 200 ]; then return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# start_server URL LOG [VAR=VALUE…]: launch_server in the environment given,
# up within 10 s, or the run ends.
start_server() {
  local url=$1 logfile=$2
  shift 2
  launch_server "$url" "$logfile" 10 env "$@" || die "server did not come up: $(tail -n5 "$logfile")"
}

stop_server() {
  # It may have died already (a crash under valgrind, say): not an error here.
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# ---------------------------------------------------------------- one backend
run_backend() {
  BACKEND=$1
  local url=$2
  log "$BACKEND: preparing a fresh database"
  printf '%s\n' "$PASSWORD" | "$BIN" --database-url "$url" user add "$USERNAME"
  local i
  for i in $(seq 0 $((ACCOUNTS - 1))); do
    printf '%s\n' "$PASSWORD" | "$BIN" --database-url "$url" user add "$USERNAME-$i" >/dev/null
  done
  meta accounts "$ACCOUNTS"
  local n_c=${COOKIES_C[$BACKEND]} n_p=${COOKIES_PROFILE[$BACKEND]} mint_start
  mint_start=$(date +%s)
  "$PREP" mint --database-url "$url" --count $((n_c + n_p)) \
    --per-user "$PER_USER" --threads "${MINT_THREADS[$BACKEND]}" --out "$WORK/cookies-$BACKEND.txt"
  meta "mint_secs_$BACKEND" $(( $(date +%s) - mint_start ))
  meta "cookies_$BACKEND" "$n_c"
  head -n "$n_c" "$WORK/cookies-$BACKEND.txt" >"$WORK/cookies-$BACKEND-c.txt"
  tail -n "$n_p" "$WORK/cookies-$BACKEND.txt" >"$WORK/cookies-$BACKEND-profile.txt"

  start_server "$url" "$WORK/server-$BACKEND.log"
  meta "startup_rss_kb_$BACKEND" "$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status")"
  start_sampler

  log "$BACKEND: warm-up (${WARMUP} s, not recorded)"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" "$BASE/static/style.css" >/dev/null

  log "$BACKEND: (a) GET /static/style.css"
  run_case a
  log "$BACKEND: (b) GET / with a session cookie"
  sign_in
  run_case b
  log "$BACKEND: (c) GET / with a remember-me cookie, a new one each request"
  COOKIE_FILE=$WORK/cookies-$BACKEND-c.txt
  run_case c
  log "$BACKEND: (d) POST /login with the right password"
  login_form
  run_case d
  log "$BACKEND: (e) (b) during a sign-in storm (d) at full load"
  sign_in
  run_case_e

  meta "vmhwm_kb_$BACKEND" "$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status")"
  meta "rss_after_kb_$BACKEND" "$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status")"

  if [ "$PERF" = 1 ]; then
    profile_case a
    sign_in
    profile_case b
    COOKIE_FILE=$WORK/cookies-$BACKEND-profile.txt
    profile_case c
    profile_case d
    sign_in
    profile_case e
  fi

  kill "$SAMPLER_PID" 2>/dev/null || true
  wait "$SAMPLER_PID" 2>/dev/null || true
  SAMPLER_PID=""
  stop_server
  for case in idle a b c d e; do
    awk -v c="$case" -v b="$BACKEND" '$1 == c {if ($2 > r) r = $2; if ($3 > t) t = $3}
      END {printf "RSS backend=%s case=%s peak_kb=%d peak_threads=%d\n", b, c, r, t}' \
      "$WORK/rss-$BACKEND.txt" >>"$RESULTS"
  done
  # Warnings and errors the server logged (its access log is one INFO line
  # per request).
  { grep -E 'WARN|ERROR' "$WORK/server-$BACKEND.log" | sed 's/\x1b\[[0-9;]*m//g; s/^[^ ]* *//' |
      sort | uniq -c | sort -rn | head -n5 | sed "s/^/LOG backend=$BACKEND /" >>"$RESULTS"; } || true
  meta "server_log_mib_$BACKEND" "$(du -m "$WORK/server-$BACKEND.log" | cut -f1)"

}

for backend in $BACKENDS; do
  case $backend in
    sqlite)
      run_backend sqlite "sqlite://$WORK/bench-sqlite.db"
      ;;
    postgres)
      if ! psql -q "$PG_URL" -c 'SELECT 1' >/dev/null 2>&1; then
        echo "bench: PostgreSQL at $PG_URL does not answer: skipped" >&2
        meta postgres_skipped yes
        continue
      fi
      PG_SCHEMA="bench_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
      psql -q "$PG_URL" -c "CREATE SCHEMA $PG_SCHEMA" >/dev/null
      sep='?'; case $PG_URL in *\?*) sep='&' ;; esac
      run_backend postgres "${PG_URL}${sep}options=-c%20search_path%3D${PG_SCHEMA}"
      PGOPTIONS='-c client_min_messages=warning' psql -q "$PG_URL" -c "DROP SCHEMA $PG_SCHEMA CASCADE" >/dev/null
      PG_SCHEMA=""
      ;;
    *) die "unknown backend $backend" ;;
  esac
done

# ---------------------------------------------------------------- instructions
# (b) against (a) in instructions, with valgrind's callgrind: a count that
# does not move with the VM's neighbours, and per function, so the report can
# say where (b)'s extra instructions go. On SQLite (neither case touches the
# database), one wrk connection at a time through the server under
# callgrind; not part of the measured runs above.
# label=function name as callgrind_annotate prints it (a trailing * matches
# any continuation: the cookie store's load is inlined into the middleware).
FUNCTIONS_OF_B=(
  "cookie header parsed (percent-decoding)=actix_web::request::HttpRequest::cookies"
  "session cookie decrypted (base64, AES-GCM)=cookie::secure::private::PrivateJar<J>::get"
  "session map parsed from JSON (actix-session's cookie store)=/src/storage/cookie.rs:<actix_session::middleware::InnerSessionMiddleware*"
  "session map copied into the request=actix_session::session::Session::set_session"
  "session values read (JSON; the auth state; the CSRF token)=actix_session::session::Session::get"
  "page rendered (askama) and response built=rememberme::demo::view::html"
  "the access-log line=<log::__private_api::GlobalLogger as log::Log>::log"
)
# Optional: any failure here is logged and skipped (the measured runs above
# are kept). `set -e` does not apply inside a function called from `if`, so
# every step that matters is checked.
callgrind_ab() {
  BACKEND=callgrind
  log "instructions per request of (a) and (b) (callgrind)"
  local url="sqlite://$WORK/bench-callgrind.db" case dump requests total entry label pattern ir
  printf '%s\n' "$PASSWORD" | "$BIN" --database-url "$url" user add "$USERNAME" >/dev/null || return 1
  launch_server "$url" "$WORK/server-callgrind.log" 120 \
    valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
    || { log "the server under callgrind did not come up"; return 1; }
  # In a subshell: `sign_in` dies (exits) on failure.
  ( sign_in && echo "$SESSION" >"$WORK/callgrind-session" ) || return 1
  SESSION=$(<"$WORK/callgrind-session")
  wrk -t1 -c2 -d3s "$BASE/static/style.css" >/dev/null || return 1
  env BENCH_MODE=session "BENCH_SESSION=$SESSION" wrk -t1 -c2 -d3s -s "$ROOT/bench/wrk.lua" "$BASE/" >/dev/null || return 1
  for case in a b; do
    callgrind_control -z "$SERVER_PID" >/dev/null || return 1
    if [ "$case" = a ]; then
      wrk -t1 -c2 -d10s -s "$ROOT/bench/wrk.lua" "$BASE/static/style.css" >"$WORK/callgrind-wrk-$case.txt" || return 1
    else
      env BENCH_MODE=session "BENCH_SESSION=$SESSION" \
        wrk -t1 -c2 -d10s -s "$ROOT/bench/wrk.lua" "$BASE/" >"$WORK/callgrind-wrk-$case.txt" || return 1
    fi
    # Every response must be the expected 200 (a refused session would
    # measure something else).
    grep -q 'statuses=200:[0-9]*$' "$WORK/callgrind-wrk-$case.txt" \
      || { log "callgrind ($case): not all 200: $(grep -o 'statuses=.*' "$WORK/callgrind-wrk-$case.txt")"; return 1; }
    callgrind_control -d "$case" "$SERVER_PID" >/dev/null || return 1
  done
  stop_server
  for case in a b; do
    dump=$(grep -l "^desc: Trigger: dump $case\$" "$WORK"/callgrind.out.* 2>/dev/null | head -n1 || true)
    [ -n "$dump" ] || { log "no callgrind dump for ($case)"; return 1; }
    requests=$(sed -n 's/.*BENCH_RESULT requests=\([0-9]*\).*/\1/p' "$WORK/callgrind-wrk-$case.txt")
    # Every function (threshold 100), no source annotation.
    callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$dump" >"$WORK/callgrind-$case.txt" 2>/dev/null || return 1
    total=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' "$WORK/callgrind-$case.txt")
    echo "CALLGRIND case=$case requests=$requests total=$total" >>"$RESULTS"
    for entry in "${FUNCTIONS_OF_B[@]}"; do
      label=${entry%%=*} pattern=${entry#*=}
      # The first (largest: the listing is sorted) line naming exactly that
      # function.
      ir=$(awk -v p="$pattern" '
        BEGIN { prefix = sub(/\*$/, "", p) }
        { i = index($0, p)
          if (i) { c = substr($0, i + length(p), 1)
                   if (prefix || c == "" || c == " ") { gsub(",", "", $1); print $1; exit } } }
      ' "$WORK/callgrind-$case.txt")
      echo "CALLGRIND_FN case=$case ir=${ir:-0} label=$label" >>"$RESULTS"
    done
  done
  rm -f "$WORK"/callgrind.out*
}
if command -v valgrind >/dev/null 2>&1 && command -v callgrind_annotate >/dev/null 2>&1; then
  if ! callgrind_ab; then
    log "callgrind measurement skipped"
    [ -n "${SERVER_PID:-}" ] && stop_server
  fi
fi

meta total_secs $(( $(date +%s) - START_TIME ))
python3 "$ROOT/bench/report.py" "$WORK" "$ROOT/BENCHMARKS.md"
