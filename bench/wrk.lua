-- bench/wrk.lua: wrk's script for make bench (bench/bench.sh).
--
-- Without BENCH_TOKENS_FILE in the environment, every request is the one wrk was given
-- (GET with the -H Authorization header): no request() function is defined, so wrk keeps
-- its fast path of one pre-built request.
--
-- With BENCH_TOKENS_FILE (lines "<sub> <token>"), each request carries a token chosen at
-- random among the file's: the 10,000-users scenario. Each wrk thread loads the file into
-- its own Lua state and builds every request once, up front, so the per-request cost in
-- wrk is one random number.
--
-- done() prints one line that bench.sh reads:
--   BENCH requests <n> duration_us <n> errors <connect> <read> <write> <status> <timeout>
--         latency_us <p50> <p90> <p99> <max>
-- (errors.status counts answers >= 400: zero for an allowed scenario, every answer for
-- the refused one.)

local tokens_file = os.getenv("BENCH_TOKENS_FILE")

if tokens_file ~= nil and tokens_file ~= "" then
    local requests = {}

    function init(args)
        local path = wrk.path
        for line in io.lines(tokens_file) do
            local token = line:match("^%S+ (%S+)$")
            if token then
                requests[#requests + 1] =
                    wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
            end
        end
        if #requests == 0 then
            error("no token in " .. tokens_file)
        end
        math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
    end

    function request()
        return requests[math.random(#requests)]
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "BENCH requests %d duration_us %d errors %d %d %d %d %d latency_us %d %d %d %d\n",
        summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
