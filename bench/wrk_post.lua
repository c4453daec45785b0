-- wrk script for the benchmark: POST an OpenAI chat request, check every
-- response, and print one machine-readable line from done().
--
-- Environment: BENCH_MODEL (alias), BENCH_STREAM=1 (stream with include_usage),
-- BENCH_API_KEY (sent as "Authorization: Bearer ...", when set), BENCH_TEMPERATURE
-- (added as "temperature" when set: 0 makes the request cacheable by the gateway).
-- Output: a line "BENCH_JSON {...}" with requests, duration and bytes, wrk's
-- error counters, latency (microseconds, as wrk measures it), a histogram of
-- the HTTP statuses and the count of 2xx responses whose body looked wrong.

local model = os.getenv("BENCH_MODEL") or "bench-json"
local stream = os.getenv("BENCH_STREAM") == "1"
local key = os.getenv("BENCH_API_KEY") or ""
local temperature = os.getenv("BENCH_TEMPERATURE") or ""

local body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16'
if temperature ~= "" then
  body = body .. ',"temperature":' .. temperature
end
if stream then
  body = body .. ',"stream":true,"stream_options":{"include_usage":true}'
end
body = body .. "}"

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = stream and "text/event-stream" or "application/json"
if key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

-- What a good body must contain: the stream's terminator, or a completion object.
local marker = stream and "data: [DONE]" or "chat.completion"

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
