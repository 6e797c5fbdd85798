-- wrk script for perf/chaos.py, phase d (memory): of every 11 requests, 10 carry no cookie (the
-- filter mints a new session for each: one distinct session per request) and 1 carries one of
-- the driver's valid sessions (verified against the 10,000-entry revocation lists). A fixed
-- number of requests per thread, like perf/wrk/soak.lua.
--
-- Arguments (after `--`): 1 quota per thread   2 file of valid sessions (`index cookie sid`)
--   3 file to append "done" to when this thread's quota is reached

local fresh, valid, sids = nil, {}, {}
local quota, count, i, v = 0, 0, 0, 0
local done_file
tally = { n = 0, non2xx = 0, minted = 0, not_minted = 0, valid = 0, wrong_session = 0 }

local threads = {}
setup = function(thread)
  threads[#threads + 1] = thread
end

init = function(args)
  quota = tonumber(args[1])
  done_file = args[3]
  fresh = wrk.format("GET", "/chaos/mint", { ["x-soak-class"] = "mint" })
  for line in io.lines(args[2]) do
    local idx, cookie, sid = line:match("^(%S+) (%S+) (%S+)$")
    if idx then
      sids[idx] = sid
      valid[#valid + 1] = wrk.format("GET", "/chaos/valid", { Cookie = cookie, ["x-soak-class"] = idx })
    end
  end
end

request = function()
  i = i + 1
  if i % 11 == 0 then
    v = v % #valid + 1
    return valid[v]
  end
  return fresh
end

response = function(status, headers, body)
  tally.n = tally.n + 1
  if status < 200 or status > 299 then
    tally.non2xx = tally.non2xx + 1
  end
  local idx = headers["x-soak-class"]
  if idx == "mint" then
    local sc = headers["set-cookie"]
    if sc and sc:find("__Host-session=", 1, true) == 1 then
      tally.minted = tally.minted + 1
    else
      tally.not_minted = tally.not_minted + 1
    end
  elseif idx then
    tally.valid = tally.valid + 1
    if headers["x-echo-sid"] ~= sids[idx] then
      tally.wrong_session = tally.wrong_session + 1
    end
  end
  count = count + 1
  if count == quota then
    local f = io.open(done_file, "a")
    if f then
      f:write("done\n")
      f:close()
    end
    wrk.thread:stop()
  end
end

done = function(summary, latency, requests)
  local m = {}
  for _, th in ipairs(threads) do
    for k, val in pairs(th:get("tally") or {}) do
      m[k] = (m[k] or 0) + val
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"err_connect":%d,"err_read":%d,"err_write":%d,' ..
    '"err_timeout":%d,"checked":%d,"non2xx":%d,"minted":%d,"not_minted":%d,"valid":%d,' ..
    '"wrong_session":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout,
    m.n or 0, m.non2xx or 0, m.minted or 0, m.not_minted or 0, m.valid or 0, m.wrong_session or 0))
end
