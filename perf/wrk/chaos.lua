-- wrk script for perf/chaos.py, phase a (load held during config pushes): every request carries
-- one of the driver's valid sessions, paced by delay() so that the rate is steady, and every
-- response is checked: the upstream (perf/upstream.yaml) echoes the session ID it received
-- (x-echo-sid) and the request's session index (sent as x-soak-class), so a response whose
-- echoed ID is not its session's is a session wrongly refused.
--
-- Arguments (after `--`): 1 delay between two requests of one connection, ms
--   2 sessions file (lines `index cookie-pair session-id`)   3 wrk threads

local sessions, sids = {}, {}
local next_i = 0
local delay_ms = 0
-- global, flat (wrk's thread:get() copies only flat tables): done() merges them.
tally = { n = 0, non2xx = 0, local_reply = 0, wrong_session = 0, new_cookie = 0 }

local threads, counter = {}, 0
setup = function(thread)
  counter = counter + 1
  thread:set("id", counter)
  threads[#threads + 1] = thread
end

init = function(args)
  delay_ms = tonumber(args[1])
  local nthreads = tonumber(args[3])
  local i = 0
  for line in io.lines(args[2]) do
    local idx, cookie, sid = line:match("^(%S+) (%S+) (%S+)$")
    if idx and i % nthreads == id - 1 then
      sids[idx] = sid
      sessions[#sessions + 1] = wrk.format("GET", "/chaos/push?i=" .. idx,
        { Cookie = cookie, ["x-soak-class"] = idx })
    end
    i = i + 1
  end
end

request = function()
  next_i = next_i % #sessions + 1
  return sessions[next_i]
end

delay = function()
  return delay_ms
end

response = function(status, headers, body)
  tally.n = tally.n + 1
  if status < 200 or status > 299 then
    tally.non2xx = tally.non2xx + 1
  end
  local idx = headers["x-soak-class"]
  if not idx then
    tally.local_reply = tally.local_reply + 1 -- answered by Envoy, not the upstream
    return
  end
  if headers["x-echo-sid"] ~= sids[idx] then
    tally.wrong_session = tally.wrong_session + 1
  end
  if headers["set-cookie"] then
    tally.new_cookie = tally.new_cookie + 1 -- a fresh session minted for a valid one
  end
end

done = function(summary, latency, requests)
  local m = { n = 0, non2xx = 0, local_reply = 0, wrong_session = 0, new_cookie = 0 }
  for _, th in ipairs(threads) do
    for k, v in pairs(th:get("tally") or {}) do
      m[k] = (m[k] or 0) + v
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"checked":%d,"non2xx":%d,"local_reply":%d,"wrong_session":%d,"new_cookie":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout,
    m.n, m.non2xx, m.local_reply, m.wrong_session, m.new_cookie))
end
