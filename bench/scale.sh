#!/usr/bin/env bash
# Cost as the work grows (issue 16): `bash bench/scale.sh`.
#
# Re-authentication by remember-me cookie (examples/quickstart.rs, the
# README's wiring; lookup, compare-and-swap rotation, audit row, a new
# session, two cookies) with 2 x 10^4, 10^6 and 10^7 live tokens in the table,
# on SQLite (a fresh file) and PostgreSQL (a fresh schema in database
# `test`). For each size:
#   * the table is filled to the size with live tokens of other users (SQL,
#     random series hashes, ten tokens a user), then, each round, the
#     cookies of the round are minted through the crate (2 x 10^4 of them, the
#     previous round's deleted first, so the table holds the size) and
#     spent once each: wrk -t2 -c16 for $DURATION s. $ROUNDS rounds, the
#     median reported. (The smallest size is the cookies alone: a round
#     must not run out of cookies, and at 10^4 it did once the rotation got
#     faster than 10^4/s.)
#   * the sizes take turns: every size's table is filled and served (a
#     quickstart each) before the first round, and each round measures
#     every size in turn (the order reversed every other round). The
#     machine's speed drifts by a third within a quarter of an hour here;
#     measured one after the other, the sizes compared the machine's
#     moments as much as the table sizes. (All of a backend's tables exist
#     at once, so they share the OS's page cache and PostgreSQL's
#     shared_buffers, as the tables of one server would.)
#   * at 10^6: 10^6 expired tokens are added and purged by the demo
#     (`rememberme serve` purges at its start, in-process, in batches of
#     `store::PURGE_BATCH`); each batch logs how long it held the write
#     lock (SQLite) or its rows' locks (PostgreSQL), and re-authentications
#     run on the same process beside it: their slowest answer is the
#     longest a request waited behind a batch.
#   * at the largest size: the admin token list (`rememberme serve`,
#     `GET /admin/tokens`, its first page, a page in the middle of the
#     table by keyset, and one user's tokens), answered ten times each.
#
# Writes its table into BENCHMARKS.md between the `scale.sh` markers (the
# other scripts keep it) and the plot bench/scale.svg. A benchmark, not a
# test: `cargo test` never runs it. 15-40 minutes (as fast as the VM is that day) with a warm target
# directory; the 10^7 tables take ~4 GB of disk each while they exist.
#
# Environment (all optional): CARGO_TARGET_DIR, BENCH_PG_URL (default
# postgres://postgres@127.0.0.1:5432/test?sslmode=disable), BENCH_BACKENDS
# ("sqlite postgres"), BENCH_SIZES ("20000 1000000 10000000"), BENCH_ROUNDS (7),
# BENCH_DURATION (1 s a round: longer rounds must not spend the round's
# 2 x 10^4 cookies, so 3 s only where re-authentications run below
# 6,000/s), BENCH_KEEP=1. The PostgreSQL role must be allowed to CHECKPOINT (a
# superuser, or pg_checkpoint from PostgreSQL 15).
source "$(dirname "$0")/common.sh"
SIZES="${BENCH_SIZES:-20000 1000000 10000000}"
PURGE_SIZE=${BENCH_PURGE_SIZE:-1000000}  # the size at which the purge of as many expired rows runs
EXPIRED=${BENCH_EXPIRED:-1000000}     # expired rows the purge deletes
COOKIES=20000        # cookies minted a round (the smallest table is these alone)
PROBE_COOKIES=40000  # cookies re-authenticating beside the purge
PROBE_SECS=10        # seconds they run (from the demo's start, when its purge starts)
DURATION=${BENCH_DURATION:-1}  # seconds a round (shorter than one round's cookies last)
ROUNDS=${BENCH_ROUNDS:-7}
THREADS=2
CONNECTIONS=16
ADMIN=bench-admin
ADMIN_PASSWORD=bench-admin-password

need_tools wrk curl python3 psql
work_dir scale

log "building (release): quickstart, bench_prepare, rememberme"
cargo build --release --locked --example quickstart --bin rememberme
cargo build --release --locked --features testing --example bench_prepare
EX=$CARGO_TARGET_DIR/release/examples
BIN=$CARGO_TARGET_DIR/release/rememberme
echo "META commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" >>"$RESULTS"
echo "META date=$(date -u '+%Y-%m-%d %H:%M UTC')" >>"$RESULTS"
echo "META nproc=$(nproc)" >>"$RESULTS"
echo "META cookies_per_round=$COOKIES" >>"$RESULTS"
echo "META round_secs=$DURATION" >>"$RESULTS"
echo "META memory=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)" >>"$RESULTS"

# Starts a server: `start quickstart [NAME]` (examples/quickstart.rs on $URL)
# or `start demo` (`rememberme serve` on $URL); waits for it and sets
# PORT_OF. NAME names its log.
start() {
  local port; port=$(free_port)
  local log_file=$WORK/server-$1${2:+-$2}.log
  case $1 in
    quickstart) env PORT="$port" DATABASE_URL="$URL" "$EX/quickstart" >"$log_file" 2>&1 & ;;
    demo) "$BIN" --database-url "$URL" serve --bind "127.0.0.1:$port" --purge-interval-secs "${DEMO_PURGE_SECS:-0}" >"$log_file" 2>&1 & ;;
  esac
  PIDS+=($!)
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "http://127.0.0.1:$port/login" && { PORT_OF=$port; return; }
    sleep 0.1
  done
  die "$1 did not start: $(tail -n5 "$log_file")"
}

# SQL on the benchmark's database: SQLite through Python's sqlite3 (no CLI
# needed), PostgreSQL through psql. Prints what a query returns.
sql() {
  case $BACKEND in
    sqlite) python3 - "$DB_FILE" "$1" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
db.execute("PRAGMA synchronous = OFF")    # set-up only: the server's own
db.execute("PRAGMA cache_size = -1000000")  # connections keep FULL
for row in db.execute(sys.argv[2]).fetchall():
    print("|".join(str(v) for v in row))
db.close()
EOF
    ;;
    postgres) psql -qAt "$URL" -c "$1" ;;
  esac
}

# Inserts tokens $1..$2 (numbers) of other users, expiring at $3 (unix time):
# random series (SQLite) or SHA-256 of the number (PostgreSQL), ten a user.
fill() {
  local from=$1 to=$2 expires=$3 now; now=$(date +%s)
  local step=1000000 a b
  for ((a = from; a <= to; a += step)); do
    b=$((a + step - 1)); [ "$b" -gt "$to" ] && b=$to
    case $BACKEND in
      sqlite) sql "WITH RECURSIVE c(i) AS (SELECT $a UNION ALL SELECT i + 1 FROM c WHERE i < $b)
        INSERT INTO remember_tokens (series_hash, token_hash, user_id, created_at, last_used_at, expires_at, user_agent, ip)
        SELECT randomblob(32), randomblob(32), 'filler-' || (i / 10), $now, $now, $expires, 'bench-filler', '127.0.0.1' FROM c" ;;
      postgres) sql "INSERT INTO remember_tokens (series_hash, token_hash, user_id, created_at, last_used_at, expires_at, user_agent, ip)
        SELECT sha256(int8send(i)), sha256(int8send(-i)), 'filler-' || (i / 10), $now, $now, $expires, 'bench-filler', '127.0.0.1'
        FROM generate_series($a::bigint, $b::bigint) i" ;;
    esac
  done
  case $BACKEND in
    sqlite) sql "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null ;;
    postgres) sql "VACUUM ANALYZE remember_tokens" ;;
  esac
}

# Writes out what the set-up left in memory before a round (the database's
# checkpoint, then the OS's dirty pages), so that a round measures the
# re-authentications and not the write-back of the fill's gigabytes or of
# the round's freshly minted tokens, which grows with the table (each new
# token's series lands in an index page of its own).
settle() {
  case $BACKEND in
    sqlite) sql "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null ;;
    postgres) sql "CHECKPOINT" ;;
  esac
  sync
}

# Mints $1 cookies into $2 for new users (the database's schema is made on
# first use).
MINTS=0
mint() {
  MINTS=$((MINTS + 1))
  "$EX/bench_prepare" mint --database-url "$URL" --count "$1" --per-user 10 --out "$2" --threads 8 \
    --users-named "holder-$MINTS" 2>>"$WORK/mint.log" || die "minting failed: $(tail -n2 "$WORK/mint.log")"
}

# One wrk run of re-authentications with the cookies in $1, $2 connections,
# $3 seconds; prints wrk.lua's BENCH_RESULT line.
reauth() {
  env BENCH_MODE=remember BENCH_COOKIES="$1" BENCH_THREADS="$THREADS" \
    wrk -t"$THREADS" -c"$2" -d"$3s" --timeout 30s --latency \
    -s "$ROOT/bench/wrk.lua" "$QUICKSTART/" 2>&1 | grep '^BENCH_RESULT' || echo "BENCH_RESULT failed=1"
}

# Signs $ADMIN in at $1; prints the session cookie, `name=value`.
admin_session() {
  echo "__Host-session=$(form_session "$1" "$ADMIN" "$ADMIN_PASSWORD")"
}

# schema SIZE: the PostgreSQL schema of that size's table.
schema() { echo "rm_scale_$$_$1"; }

# use_size SIZE: points URL (and DB_FILE) at that size's database.
use_size() {
  case $BACKEND in
    sqlite)
      DB_FILE=$WORK/scale-$1.db
      URL="sqlite://$DB_FILE" ;;
    postgres)
      local sep='?'; case $PG_URL in *\?*) sep='&' ;; esac
      URL="$PG_URL${sep}options=-c%20search_path%3D$(schema "$1")" ;;
    *) die "unknown backend $BACKEND" ;;
  esac
}

for BACKEND in $BACKENDS; do
  declare -A SERVED=() MINTED_FROM=() HOLDER=()
  for SIZE in $SIZES; do
    log "$BACKEND, $SIZE live tokens: setting up"
    if [ "$BACKEND" = postgres ]; then
      psql -q "$PG_URL" -c "CREATE SCHEMA $(schema "$SIZE")" >/dev/null || die "PostgreSQL at $PG_URL is needed"
      PG_SCHEMA="${PG_SCHEMA:+$PG_SCHEMA, }$(schema "$SIZE")"  # dropped at exit
    fi
    use_size "$SIZE"
    mint 1 "$WORK/schema-cookie"   # makes the schema (migrations run at connect)
    fill_start=$(date +%s)
    filler=$((SIZE - COOKIES))
    [ "$filler" -gt 0 ] && fill 1 "$filler" $(( $(date +%s) + 30 * 86400 ))
    echo "META fill_secs_${BACKEND}_$SIZE=$(( $(date +%s) - fill_start ))" >>"$RESULTS"
    start quickstart "$SIZE"
    SERVED[$SIZE]="http://127.0.0.1:$PORT_OF"
  done
  for round in $(seq 1 "$ROUNDS"); do
    order=$SIZES
    [ $((round % 2)) = 0 ] && order=$(printf '%s\n' $SIZES | tac | tr '\n' ' ')
    for SIZE in $order; do
      use_size "$SIZE"
      QUICKSTART=${SERVED[$SIZE]}
      # The previous round's cookies (rotated, still live) go: the table
      # holds $SIZE tokens when each round runs.
      [ -n "${MINTED_FROM[$SIZE]:-}" ] && sql "DELETE FROM remember_tokens WHERE id > ${MINTED_FROM[$SIZE]}" >/dev/null
      MINTED_FROM[$SIZE]=$(sql "SELECT COALESCE(MAX(id), 0) FROM remember_tokens")
      mint "$COOKIES" "$WORK/cookies"
      HOLDER[$SIZE]="holder-$MINTS-1"  # a user of this size's cookies (the admin list's user page)
      live=$(sql "SELECT COUNT(*) FROM remember_tokens WHERE expires_at > $(date +%s)")
      settle
      echo "RUN backend=$BACKEND size=$SIZE round=$round live=$live $(reauth "$WORK/cookies" "$CONNECTIONS" "$DURATION")" >>"$RESULTS"
      tail -n1 "$RESULTS" >&2
    done
  done
  stop_servers

  for SIZE in $SIZES; do
    use_size "$SIZE"
    if [ "$SIZE" = "$PURGE_SIZE" ]; then
      # The demo purges at start (then every hour): in-process, as a site
      # runs it, while re-authentications hit the same process.
      log "$BACKEND: purging $EXPIRED expired tokens beside re-authentications"
      fill 100000001 $((100000000 + EXPIRED)) $(( $(date +%s) - 86400 ))
      mint "$PROBE_COOKIES" "$WORK/probe-cookies"
      DEMO_PURGE_SECS=3600 RUST_LOG="info,rememberme::store::diesel_store=debug" start demo
      DEMO="http://127.0.0.1:$PORT_OF"
      QUICKSTART=$DEMO probe=$(reauth "$WORK/probe-cookies" 4 "$PROBE_SECS")
      for _ in $(seq 1 600); do
        grep -q 'purged expired tokens' "$WORK/server-demo.log" && break
        sleep 0.5
      done
      grep -q 'purged expired tokens' "$WORK/server-demo.log" || die "the purge did not finish: $(tail -n3 "$WORK/server-demo.log")"
      stats=$(python3 - "$WORK/server-demo.log" <<'EOF2'
import datetime, re, sys
held, stamps, checkout = [], [], [0]
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    m = re.match(r"(\S+Z)\s", line)
    at = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")) if m else None
    h = re.search(r"purge batch.*remember_tokens.*held_ms=(\d+)", line)
    if h:
        held.append(int(h.group(1)))
        stamps.append(at)
        c = re.search(r"checkout_ms=(\d+)", line)
        checkout.append(int(c.group(1)) if c else 0)
slowest = held.index(max(held)) + 1 if held else 0  # which batch, counting from 1
held.sort()
secs = (stamps[-1] - stamps[0]).total_seconds() if len(stamps) > 1 and stamps[0] else 0
p99 = held[max(0, int(len(held) * 0.99) - 1)] if held else 0
print(f"secs={secs:.1f} batches={len(held)} max_held_ms={held[-1] if held else 0} p99_held_ms={p99} max_checkout_ms={max(checkout)} slowest_batch={slowest}")
EOF2
)
      stop_servers
      left=$(sql "SELECT COUNT(*) FROM remember_tokens WHERE expires_at <= $(date +%s)")
      echo "PURGE backend=$BACKEND size=$SIZE expired=$EXPIRED $stats left=$left $probe" >>"$RESULTS"
      tail -n1 "$RESULTS" >&2
    fi

    last_size=${SIZES##* }
    if [ "$SIZE" = "$last_size" ]; then
      log "$BACKEND: the admin token list at $SIZE tokens"
      printf '%s\n' "$ADMIN_PASSWORD" | "$BIN" --database-url "$URL" user add "$ADMIN" --admin >/dev/null 2>&1 \
        || die "could not create the admin user"
      start demo
      DEMO="http://127.0.0.1:$PORT_OF"
      session=$(admin_session "$DEMO")
      middle=$(( SIZE / 2 ))
      for page in "first:/admin/tokens" "middle:/admin/tokens?before=$middle" "user:/admin/tokens?user=${HOLDER[$SIZE]}"; do
        name=${page%%:*} path=${page#*:}
        times=()
        for _ in $(seq 1 10); do
          read -r code secs < <(curl -sS -o "$WORK/page" -w '%{http_code} %{time_total}\n' -H "Cookie: $session" "$DEMO$path")
          [ "$code" = 200 ] || die "$path answered $code"
          times+=("$secs")
        done
        rows=$(( $(grep -c '<tr' "$WORK/page" || true) - 1 ))  # less the header row
        echo "ADMIN backend=$BACKEND size=$SIZE page=$name rows=$rows ms=$(printf '%s\n' "${times[@]}" | awk '{printf "%s%.1f", (NR > 1 ? "," : ""), $1 * 1000}')" >>"$RESULTS"
        tail -n1 "$RESULTS" >&2
      done
      stop_servers
    fi
    # This size is done: its table goes (a 10^7 table is ~4 GB).
    rm -f "$WORK/scale-$SIZE.db" "$WORK/scale-$SIZE.db-wal" "$WORK/scale-$SIZE.db-shm"
    if [ "$BACKEND" = postgres ]; then
      psql -q "$PG_URL" -c "DROP SCHEMA $(schema "$SIZE") CASCADE" >/dev/null
    fi
  done
  drop_schema
done

python3 "$ROOT/bench/scale_report.py" "$RESULTS" "$ROOT/BENCHMARKS.md" "$ROOT/bench/scale.svg"
