-- Partner earn: POST /api/v1/points with a unique requestId per request; the callback goes to
-- the harness's sink, which matches it to the request by requestId. The requestId ends with
-- the wall-clock millisecond the request was made, so the harness measures request -> callback
-- from the client's side.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_usec; } bench_timeval;
  int gettimeofday(bench_timeval *tv, void *tz);
]]
local clock = ffi.new("bench_timeval")
local members = tonumber(os.getenv("BENCH_MEMBERS") or "10000")
local token = os.getenv("BENCH_TOKEN")
local rule = os.getenv("BENCH_RULE")
local sink = os.getenv("BENCH_SINK")
local prefix = os.getenv("BENCH_MEMBER_PREFIX") or "bench-"
local run = os.getenv("BENCH_RUN") or "r"
local counter = 0
local headers = nil

local function now_ms()
  ffi.C.gettimeofday(clock, nil)
  return tonumber(clock.tv_sec) * 1000 + math.floor(tonumber(clock.tv_usec) / 1000)
end

function init(args)
  math.randomseed(os.time() + tid * 104729)
  headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"userId":"%s%d","ruleId":"%s","amount":5,"requestId":"%s-%d-%d-%d","callbackUrl":"%s"}',
    prefix, math.random(1, members), rule, run, tid, counter, now_ms(), sink)
  return wrk.format("POST", "/api/v1/points", headers, body)
end

function response(status, headers, body)
  count_response(status)
end
