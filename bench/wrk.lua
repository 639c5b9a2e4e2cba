-- wrk script of the benchmark harness (bench/run.sh). One script, four
-- kinds of request, chosen by the environment:
--
--   BENCH_MODE=plain     GET as given on the command line (no cookie)
--   BENCH_MODE=session   GET with "Cookie: __Host-session=$BENCH_SESSION"
--   BENCH_MODE=remember  GET / with "Cookie: __Host-remember_me=<v>", a different
--                        line of $BENCH_COOKIES for every request: each cookie
--                        is valid once (its first use rotates it; a second use
--                        would be theft and revoke the holder's tokens)
--   BENCH_MODE=login     POST /login, form $BENCH_BODY, "Cookie: __Host-session=$BENCH_SESSION";
--                        with BENCH_ACCOUNTS=N, every "{account}" in the form becomes
--                        0..N-1 in turn (each thread from its own start), so the
--                        sign-ins spread over N accounts instead of queueing on one
--                        (the session cookie carries the CSRF token of the body)
--
-- Every response's status is counted, because wrk alone calls a 303 to the
-- sign-in page a success. done() prints one line the harness parses:
--   BENCH_RESULT requests=… duration_us=… rps=… p50_us=… p99_us=… ... statuses=200:n,303:n

local mode = os.getenv("BENCH_MODE") or "plain"
local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

local cookies = {}
local next_cookie = 1
statuses = {}
exhausted = 0

function init(args)
   local session = os.getenv("BENCH_SESSION")
   if mode == "session" then
      wrk.headers["Cookie"] = "__Host-session=" .. session
   elseif mode == "login" then
      wrk.method = "POST"
      wrk.body = os.getenv("BENCH_BODY")
      wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
      wrk.headers["Cookie"] = "__Host-session=" .. session
   elseif mode == "remember" then
      -- Thread `id` of `nthreads` takes lines id+1, id+1+nthreads, ...
      local nthreads = tonumber(os.getenv("BENCH_THREADS"))
      local i = 0
      for line in io.lines(os.getenv("BENCH_COOKIES")) do
         if i % nthreads == id then
            cookies[#cookies + 1] = line
         end
         i = i + 1
      end
   end
end

local accounts = tonumber(os.getenv("BENCH_ACCOUNTS") or "1")
if mode == "login" and accounts > 1 then
   local n = 0
   function request()
      -- Thread `id` starts at account id * 7, so the threads do not march in step.
      local account = (id * 7 + n) % accounts
      n = n + 1
      local body = string.gsub(wrk.body, "{account}", tostring(account))
      return wrk.format(nil, nil, nil, body)
   end
end

if mode == "remember" then
   function request()
      local value = cookies[next_cookie]
      if value == nil then
         -- Out of cookies: a request the server answers 404, counted apart,
         -- so the run is reported as invalid instead of replaying a cookie.
         exhausted = exhausted + 1
         return wrk.format("GET", "/bench-cookies-exhausted")
      end
      next_cookie = next_cookie + 1
      return wrk.format("GET", "/", { ["Cookie"] = "__Host-remember_me=" .. value })
   end
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local total = {}
   local exhausted_total = 0
   for _, thread in ipairs(threads) do
      for status, n in pairs(thread:get("statuses")) do
         total[status] = (total[status] or 0) + n
      end
      exhausted_total = exhausted_total + thread:get("exhausted")
   end
   local parts = {}
   for status, n in pairs(total) do
      parts[#parts + 1] = status .. ":" .. n
   end
   table.sort(parts)
   local e = summary.errors
   io.write(string.format(
      "BENCH_RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
      "socket_errors=%d timeouts=%d exhausted=%d statuses=%s\n",
      summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      e.connect + e.read + e.write, e.timeout, exhausted_total, table.concat(parts, ",")))
end
