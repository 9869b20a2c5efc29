-- wrk script: POST a fixed body with fixed headers, then print one machine-readable summary line.
-- BENCH_BODY_FILE: path of the request body; BENCH_HEADERS: "name: value" lines.

local function read_file(path)
  local file = assert(io.open(path, "rb"))
  local data = file:read("*a")
  file:close()
  return data
end

wrk.method = "POST"
wrk.body = read_file(assert(os.getenv("BENCH_BODY_FILE"), "BENCH_BODY_FILE is not set"))
wrk.headers["Content-Type"] = "application/json"
for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^%s*([^:]+):%s*(.-)%s*$")
  if name then
    wrk.headers[name] = value
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_WRK {\"requests\": %d, \"duration_us\": %d, \"bytes\": %d, \"connect\": %d, "
      .. "\"read\": %d, \"write\": %d, \"status\": %d, \"timeout\": %d, "
      .. "\"latency_p50_us\": %d, \"latency_p99_us\": %d, \"latency_max_us\": %d}\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max
  ))
end
