-- GET /healthz: no database, no auth; what the HTTP stack alone answers (the ceiling).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function request()
  seq = seq + 1
  return wrk.format("GET", "/healthz")
end
