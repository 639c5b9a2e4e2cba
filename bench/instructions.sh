#!/usr/bin/env bash
# The layer's cost on a signed-in request, counted in instructions:
# `bash bench/instructions.sh`.
#
# (B) examples/bench_baseline.rs and (S) examples/quickstart.rs (SQLite, a
# fresh file), each a release build under valgrind's callgrind: signed in
# once, $WARMUP uncounted requests, then $REQUESTS signed-in `GET /` on one
# keep-alive connection with counting on (callgrind_control), then
# counting off and a dump. Prints instructions a request of each, their
# difference, and the functions of the layer and of actix-session that
# differ most. User-space instructions are repeatable for the same binary
# and inputs whatever else the machine does, which wrk's ratios are not:
# this is how a change to the signed-in path is judged (BENCHMARKS.md,
# bench/layer_notes.md). A benchmark, not a test: `cargo test` never runs
# it. About 3 minutes with a warm target directory.
#
# Environment (all optional): CARGO_TARGET_DIR, BENCH_KEEP=1 (keep the work
# directory with the callgrind files, for callgrind_annotate).
source "$(dirname "$0")/common.sh"
REQUESTS=3000
WARMUP=200

need_tools valgrind callgrind_control callgrind_annotate curl python3
work_dir instructions
log "building (release): quickstart, bench_baseline"
cargo build --release --locked --example quickstart --example bench_baseline
EX=$CARGO_TARGET_DIR/release/examples

# get PORT COOKIE N: N signed-in `GET /` on one connection; prints how many
# answered `hello alice`.
get() {
  python3 - "$@" <<'PY'
import http.client, sys
port, cookie, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port)
ok = 0
for _ in range(n):
    conn.request("GET", "/", headers={"Cookie": "__Host-session=" + cookie})
    res = conn.getresponse()
    ok += res.status == 200 and res.read() == b"hello alice"
print(ok)
PY
}

# count CASE EXAMPLE: instructions a request of EXAMPLE, into $WORK/CASE.*.
count() {
  local case=$1 name=$2 port pid session ok
  port=$(free_port)
  (cd "$WORK" && exec env PORT="$port" DATABASE_URL="sqlite://$WORK/$case.db" \
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/$case.out" \
    "$EX/$name" >"$WORK/$case.log" 2>&1) &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.2
  done
  session=$(form_session "http://127.0.0.1:$port" alice alice-password)
  get "$port" "$session" "$WARMUP" >/dev/null
  callgrind_control -i on "$pid" >/dev/null
  ok=$(get "$port" "$session" "$REQUESTS")
  callgrind_control -i off "$pid" >/dev/null
  callgrind_control -d "$pid" >/dev/null
  stop_servers
  [ "$ok" = "$REQUESTS" ] || die "$name: $ok of $REQUESTS answered hello alice"
  callgrind_annotate --inclusive=yes "$WORK/$case.out.1" >"$WORK/$case.txt" 2>/dev/null
  local total
  total=$(grep -m1 'PROGRAM TOTALS' "$WORK/$case.txt" | awk '{gsub(",", "", $1); print $1}')
  printf '%s %s %d %d\n' "$case" "$name" "$(( total / REQUESTS ))" "${#session}" >>"$RESULTS"
}

count B bench_baseline
count S quickstart
python3 - "$WORK" "$REQUESTS" <<'PY'
import re, sys
work, n = sys.argv[1], int(sys.argv[2])
rows = {l.split()[0]: l.split() for l in open(f"{work}/results.txt")}
b, s = int(rows["B"][2]), int(rows["S"][2])
print(f"(B) baseline   {b:>7,} instructions a request (session cookie {rows['B'][3]} characters)")
print(f"(S) quickstart {s:>7,} instructions a request (session cookie {rows['S'][3]} characters)")
print(f"the layer      {s - b:>+7,}   B/S = {b / s:.3f}")
def functions(case):
    out = {}
    for line in open(f"{work}/{case}.txt"):
        m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(\S+?):(.+?) \[", line)
        if m:
            out.setdefault(m.group(3), int(m.group(1).replace(",", "")) // n)
    return out
fb, fs = functions("B"), functions("S")
print("\nfunctions (inclusive) that differ most, per request: B, S, S - B")
keys = [k for k in fs if "rememberme" in k or "actix_session" in k or "cookie" in k]
for k in sorted(keys, key=lambda k: -abs(fs[k] - fb.get(k, 0)))[:15]:
    print(f"{fb.get(k, 0):>8,} {fs[k]:>8,} {fs[k] - fb.get(k, 0):>+8,}  {k[:110]}")
PY
