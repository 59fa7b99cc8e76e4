-- load.lua: wrk script for `cge serve`: POST /v1/embeddings, one short text per request, answers
-- counted by status in every thread; done() prints one line that the test and the benchmark
-- read: LOAD requests= ok= r429= other= sockerr= rps= p50_ms= p95_ms= p99_ms=
-- Arguments (after --): [API key] [distinct texts, default 500; 0 = every request new]
local threads = {}
local count = 0

function setup(thread)
  thread:set("id", count)
  table.insert(threads, thread)
  count = count + 1
end

function init(args)
  ok, r429, other, n = 0, 0, 0, 0
  distinct = tonumber(args[2] or "500")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if args[1] and args[1] ~= "" then wrk.headers["Authorization"] = "Bearer " .. args[1] end
end

function request()
  n = n + 1
  local k = distinct > 0 and (n % distinct) or n
  return wrk.format(nil, nil, nil,
    string.format('{"input": "a short load test text number %d from thread %d"}', k, id))
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 elseif status == 429 then r429 = r429 + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local o, t, x = 0, 0, 0
  for _, th in ipairs(threads) do
    o = o + th:get("ok"); t = t + th:get("r429"); x = x + th:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    "LOAD requests=%d ok=%d r429=%d other=%d sockerr=%d rps=%.1f p50_ms=%.3f p95_ms=%.3f p99_ms=%.3f\n",
    summary.requests, o, t, x, e.connect + e.read + e.write + e.timeout,
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
