-- Shared by commit.lua and lookup.lua (wrk 4): terminal keys, cards, counting replies.
--
-- Settings come from the environment (bench/pos.py sets them):
--   BENCH_KEYS         a file with one terminal key a line
--   BENCH_CARD_PREFIX  BENCH_CARD_FIRST  BENCH_CARD_COUNT  BENCH_CARD_WIDTH
--   BENCH_RUN_ID       makes check ids unique across runs
-- A reply that is not 2xx is an error; done() prints one line "WRK_RESULT {json}".

keys = {}
for line in io.lines(os.getenv("BENCH_KEYS")) do
  if #line > 0 then keys[#keys + 1] = line end
end
card_prefix = os.getenv("BENCH_CARD_PREFIX")
card_first = tonumber(os.getenv("BENCH_CARD_FIRST"))
card_count = tonumber(os.getenv("BENCH_CARD_COUNT"))
card_format = card_prefix .. "%0" .. os.getenv("BENCH_CARD_WIDTH") .. "d"
run_id = os.getenv("BENCH_RUN_ID")

local threads = {}
local next_id = 1

function setup(thread)
  thread:set("tid", next_id)
  threads[#threads + 1] = thread
  next_id = next_id + 1
end

function init(args)
  math.randomseed(tid * 7919 + os.time())
  seq = 0
  replies = 0
  non2xx = 0
  first_bad = ""
end

function random_card()
  return string.format(card_format, card_first + math.random(0, card_count - 1))
end

function random_key()
  return keys[math.random(#keys)]
end

function response(status, headers, body)
  replies = replies + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if first_bad == "" then
      first_bad = status .. " " .. string.sub(body or "", 1, 300)
    end
  end
end

function done(summary, latency, requests)
  local bad, seen, sample = 0, 0, ""
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
    seen = seen + thread:get("replies")
    local one = thread:get("first_bad")
    if sample == "" and one ~= "" then sample = one end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"replies":%d,"duration_us":%d,"non2xx":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, seen, summary.duration, bad, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
  if sample ~= "" then
    io.write("WRK_FIRST_ERROR " .. string.gsub(sample, "\n", " ") .. "\n")
  end
end
