-- POST /api/v1/pos/checks: a closed check of two lines with a random card, every other
-- one paying 1.00 point; check ids are unique (run id, wrk thread, counter).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function request()
  seq = seq + 1
  local points = (seq % 2 == 0) and "1.00" or "0"
  local body = string.format(
    '{"check_id":"%s-%d-%d","card":"%s","lines":["%d.%02d","%d.%02d"],"points":"%s"}',
    run_id, tid, seq, random_card(), math.random(1, 3000), math.random(0, 99),
    math.random(1, 500), math.random(0, 99), points)
  return wrk.format("POST", "/api/v1/pos/checks", {
    ["Authorization"] = "Bearer " .. random_key(),
    ["Content-Type"] = "application/json",
  }, body)
end
