-- POST pre-built JSON bodies (files listed in BENCH_BODIES, one path per line) to BENCH_PATH,
-- cycling per thread, with a bearer token. Used for follower bulk transactions.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local token = os.getenv("BENCH_TOKEN")
local target = os.getenv("BENCH_PATH")
local bodies = {}
for line in io.lines(os.getenv("BENCH_BODIES")) do
  local f = io.open(line, "r")
  bodies[#bodies + 1] = f:read("*a")
  f:close()
end
local index = 0

function init(args)
  index = tid * 31
end

function request()
  index = index + 1
  return wrk.format("POST", target, {
    ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token},
    bodies[(index % #bodies) + 1])
end

function response(status, headers, body)
  count_response(status)
end
