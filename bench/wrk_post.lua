-- wrk script for the benchmark: POST one request (chat completions, Anthropic
-- Messages or Responses), check every response, and print one machine-readable
-- line from done().
--
-- Environment (bench/apis.py's wrk_env() builds it): BENCH_BODY (the request body,
-- sent as is), BENCH_HEADERS (request headers, one "name: value" a line) and
-- BENCH_MARKER (what a good 2xx body contains: a completion object, the stream's
-- last event).
-- Output: a line "BENCH_JSON {...}" with requests, duration and bytes, wrk's
-- error counters, latency (microseconds, as wrk measures it), a histogram of
-- the HTTP statuses and the count of 2xx responses whose body looked wrong.

local body = os.getenv("BENCH_BODY") or ""
local marker = os.getenv("BENCH_MARKER") or ""
if body == "" or marker == "" then
  error("BENCH_BODY and BENCH_MARKER must be set (bench/apis.py wrk_env)")
end

wrk.method = "POST"
wrk.body = body
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
  local name, value = string.match(line, "^([^:]+):%s*(.*)$")
  if name then
    wrk.headers[name] = value
  end
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

-- Globals, so that done() can read them back from each thread with thread:get().
statuses = {}
bad_bodies = 0

function response(status, headers, rbody)
  statuses[status] = (statuses[status] or 0) + 1
  if status >= 200 and status < 300 and (rbody == nil or not string.find(rbody, marker, 1, true)) then
    bad_bodies = bad_bodies + 1
  end
end

function done(summary, latency, requests)
  local merged, bad = {}, 0
  for _, thread in ipairs(threads) do
    for code, count in pairs(thread:get("statuses") or {}) do
      merged[code] = (merged[code] or 0) + count
    end
    bad = bad + (thread:get("bad_bodies") or 0)
  end
  local parts = {}
  for code, count in pairs(merged) do
    table.insert(parts, string.format('"%d":%d', code, count))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d},'
      .. '"statuses":{%s},"bad_bodies":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    table.concat(parts, ","), bad))
end
