-- Shared by every workload script (loaded with dofile): thread numbering, per-thread counters
-- of responses by status, and the JSON summary the harness reads (BENCH_OUT).
--
-- Counters live in each thread's Lua state; done() runs in the main state and collects them
-- with thread:get. `ok` counts 2xx responses only: a rate of refusals is not throughput.
local threads = {}
ok_count = 0
statuses = {}
extra = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function count_response(status)
  if status >= 200 and status < 300 then ok_count = ok_count + 1 end
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

function count_extra(name)
  extra[name] = (extra[name] or 0) + 1
end

local function json_counts(counts)
  local parts = {}
  for key, value in pairs(counts) do
    table.insert(parts, string.format('"%s":%d', key, value))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local ok, by_status, extras = 0, {}, {}
  for _, thread in ipairs(threads) do
    ok = ok + (thread:get("ok_count") or 0)
    for key, value in pairs(thread:get("statuses") or {}) do
      by_status[key] = (by_status[key] or 0) + value
    end
    for key, value in pairs(thread:get("extra") or {}) do
      extras[key] = (extras[key] or 0) + value
    end
  end
  local out = io.open(os.getenv("BENCH_OUT"), "w")
  out:write(string.format(
    '{"requests":%d,"ok":%d,"duration_us":%d,"errors":%d,"p50_ms":%.3f,"p99_ms":%.3f,' ..
    '"non2xx":%d,"statuses":%s,"extra":%s}',
    summary.requests, ok, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.requests - ok,
    json_counts(by_status), json_counts(extras)))
  out:close()
end
