-- GET /api/v1/pos/cards/lookup?number=...: a random card, a random terminal's key.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function request()
  seq = seq + 1
  return wrk.format("GET", "/api/v1/pos/cards/lookup?number=" .. random_card(), {
    ["Authorization"] = "Bearer " .. random_key(),
  })
end
