-- GET requests over a list of paths (one per line in BENCH_PATHS), cycling per thread,
-- with a bearer token. Used for balance reads and audit-log pages.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local token = os.getenv("BENCH_TOKEN")
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local index = 0
local headers = nil

function init(args)
  index = tid * 7919
  headers = {["Authorization"] = "Bearer " .. token}
end

function request()
  index = index + 1
  return wrk.format("GET", paths[(index % #paths) + 1], headers)
end

function response(status, headers, body)
  count_response(status)
end
