-- wrk reporter for perf/run.py: no request/response hooks (so wrk stays cheap and does not
-- parse responses); done() prints one machine-readable line. WRK_METHOD (set by
-- common.run_wrk) replaces GET: the bench's DBSC refresh is a POST.
local method = os.getenv("WRK_METHOD")
if method and method ~= "" then
  wrk.method = method
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
