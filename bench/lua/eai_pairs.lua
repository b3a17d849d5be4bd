-- EAI two-phase deduction: commits on random members, and a confirm for every commit that
-- succeeded. wrk shares one Lua state between a thread's connections, so pairs are matched by
-- the transaction id in each reply, not by connection. extra.pairs counts confirms that
-- succeeded (a pair is done only then).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local members = tonumber(os.getenv("BENCH_MEMBERS") or "10000")
local auth = os.getenv("BENCH_EAI_AUTH")
local prefix = os.getenv("BENCH_MEMBER_PREFIX") or "bench-"
local run = os.getenv("BENCH_RUN") or "r"
local counter = 0
local users = {}      -- transaction id -> user, for commits in flight
local ready = {}      -- committed transaction ids waiting for their confirm
local headers = nil

function init(args)
  math.randomseed(os.time() + tid * 7919)
  headers = {["Content-Type"] = "application/json", ["Authorization"] = "Basic " .. auth}
end

function request()
  local tx = table.remove(ready)
  if tx ~= nil then
    local body = string.format('{"userid":"%s","transactionid":"%s"}', users[tx], tx)
    users[tx] = nil
    return wrk.format("POST", "/eai/v1/points?confirm", headers, body)
  end
  counter = counter + 1
  local user = prefix .. math.random(1, members)
  tx = run .. "-" .. tid .. "-" .. counter
  users[tx] = user
  local body = string.format(
    '{"userid":"%s","pointstodeduct":1,"transactionid":"%s","description":"bench"}', user, tx)
  return wrk.format("POST", "/eai/v1/points?commit", headers, body)
end

function response(status, headers, body)
  count_response(status)
  if status == 200 then
    if string.find(body, '"code":"committed"', 1, true) then
      local tx = string.match(body, '"transactionid":"([^"]+)"')
      if tx ~= nil then table.insert(ready, tx) end
    elseif string.find(body, '"code":"deducted"', 1, true) then
      count_extra("pairs")
    end
  end
end
