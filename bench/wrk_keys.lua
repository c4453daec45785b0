-- wrk script for the Redis soak: wrk_post.lua's request, checks and summary, with the
-- API key taken in turn from a list, so the gateway serves many client keys at once.
--
-- Environment (bench/soak_redis.py builds it): what wrk_post.lua reads, plus
-- BENCH_POST_SCRIPT (the path of wrk_post.lua), BENCH_KEY_HEADER (the header that
-- carries the key, e.g. "Authorization") and BENCH_KEYS (its values, one a line, e.g.
-- "Bearer sk-gw-...").

dofile(os.getenv("BENCH_POST_SCRIPT") or error("BENCH_POST_SCRIPT must name wrk_post.lua"))

local header = os.getenv("BENCH_KEY_HEADER") or "Authorization"
local values = {}
for value in string.gmatch(os.getenv("BENCH_KEYS") or "", "[^\n]+") do
  table.insert(values, value)
end
if #values == 0 then
  error("BENCH_KEYS must list at least one key header value")
end

local requests = {}
local turn = 0

function init(args)
  for i, value in ipairs(values) do
    local headers = {}
    for name, v in pairs(wrk.headers) do
      headers[name] = v
    end
    headers[header] = value
    requests[i] = wrk.format(nil, nil, headers)
  end
end

function request()
  turn = turn % #requests + 1
  return requests[turn]
end
