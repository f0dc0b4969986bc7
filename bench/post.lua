-- wrk script: POST a chat completion request and report in JSON.
-- BENCH_BODY holds the request body (bench/main.py sets it; the default
-- is non-streaming, BENCH_STREAM=1 picks the streaming variant).
-- wrk counts answers with status >= 400 in errors.status; the targets
-- here never send 1xx or 3xx, and bench/main.py checks a real answer of
-- each target before and after load.
local stream = os.getenv("BENCH_STREAM") == "1"
local default_body
if stream then
  default_body = '{"model":"bench-sse","messages":[{"role":"user","content":"Say hello."}],"max_tokens":256,"stream":true}'
else
  default_body = '{"model":"bench-json","messages":[{"role":"user","content":"Say hello."}],"max_tokens":256}'
end

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or default_body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_API_KEY") or "sk-bench-client-key-00")
-- BENCH_HEADERS: more headers, one "Name: value" a line (Portkey takes its upstream
-- from x-portkey-provider and x-portkey-custom-host)
for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.-)%s*$")
  if name then
    wrk.headers[name] = value
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,' ..
    '"errors":{"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f},' ..
    '"latency_us":{"min":%.0f,"mean":%.1f,"max":%.0f,"p50":%.0f,"p90":%.0f,"p99":%.0f,"p999":%.0f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
