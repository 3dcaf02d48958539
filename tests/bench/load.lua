-- wrk script: POST a JSON-RPC request to /mcp, a fixed number of requests in all.
-- BENCH_TOKENS: file of tokens, one a line; BENCH_MODE: "none", "cycle" (reuse the
-- file's tokens round-robin), "fresh" (every request a token never sent before), or
-- "dpop" (every line "token proof": a DPoP-bound token and a proof sent once);
-- BENCH_REQUESTS: requests in all (split across threads). Each thread prints
-- "thread-done" when it has its answers (wrk itself would wait out -d), and the
-- summary is one JSON line; the runner measures the elapsed time.
local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  mode = os.getenv("BENCH_MODE") or "none"
  local total = tonumber(os.getenv("BENCH_REQUESTS") or "10000")
  local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
  limit = math.floor(total / nthreads)
  sent, done_count, statuses = 0, 0, 0
  tokens = {}
  if mode ~= "none" then
    for line in io.lines(os.getenv("BENCH_TOKENS")) do
      table.insert(tokens, line)
    end
  end
  body = '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
end

function request()
  local headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json, text/event-stream" }
  if mode == "cycle" then
    headers["Authorization"] = "Bearer " .. tokens[(sent % #tokens) + 1]
  elseif mode == "fresh" then
    -- thread i takes tokens i, i+n, i+2n...: no token is sent twice
    local n = tonumber(os.getenv("BENCH_THREADS") or "1")
    headers["Authorization"] = "Bearer " .. tokens[(sent * n + id) % #tokens + 1]
  elseif mode == "dpop" then
    -- the same way, one proof per request (no proof is sent twice)
    local n = tonumber(os.getenv("BENCH_THREADS") or "1")
    local token, proof = tokens[(sent * n + id) % #tokens + 1]:match("(%S+) (%S+)")
    headers["Authorization"] = "DPoP " .. token
    headers["DPoP"] = proof
  end
  sent = sent + 1
  return wrk.format("POST", "/mcp", headers, body)
end

function response(status, headers, body)
  done_count = done_count + 1
  if done_count == limit then
    -- the runner times the run until every thread says so, then stops wrk
    io.write("thread-done\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"non2xx":%d,"errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
