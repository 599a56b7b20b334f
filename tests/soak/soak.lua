-- tests/soak/soak.lua: the mixed traffic of make soak, a wrk (4.x, LuaJIT) script.
--
--   wrk -t N -c N -d 60s --timeout 10s -s tests/soak/soak.lua http://127.0.0.1:PORT \
--       -- USERS_FILE ANON_IPS AUTH_IPS N [ROUTES]
--
-- USERS_FILE: one signed-up account a line, "<access_token> <email> <password>" (soak.sh
-- makes it). ANON_IPS: how many anonymous clients (X-Forwarded-For addresses, so the
-- gateway must run with TRUSTED_PROXIES=127.0.0.1/32). AUTH_IPS: how many of them also
-- send /signup and /login (few, so that the argon2id work the auth tier lets through
-- stays well under the machine's CPU: the soak looks for leaks and errors, not overload).
-- N: wrk's thread count (-t). ROUTES: only these routes (names below, comma-separated),
-- to find which one misbehaves; all when absent or empty.
--
-- Every request picks a route (weights below) and an identity: a user's token, a bad
-- token, or none, from an address of the anonymous pool. Each thread drives its own share
-- of the users, so it knows all their stories: the ids come back from its /start-story
-- answers and serve the later story requests. Two pseudo-routes count what a request
-- turned into: "no_story" (a story route sent before the caller had a story: 404) and
-- "delete_oldest" (a /start-story of a user at the story cap: the oldest deleted instead).
--
-- Run it with as many connections as threads (-t N -c N): a thread then has one request
-- in flight at a time, so response() always belongs to the last request() and each
-- answer is counted under its route. done() prints machine-readable lines for soak.sh:
--   route <name> <status> <count>        per route and status
--   unexpected <name> <status> <count>   a status the route must never give
--   summary <requests> <duration_us> <bytes> <connect> <read> <write> <timeout>
--   latency <p50_us> <p99_us> <max_us>

local threads = {}

function setup(thread)
    thread:set("tid", #threads + 1)
    table.insert(threads, thread)
end

-- ---------------------------------------------------------------- routes and weights

-- Each route: its weight (share of the traffic), the statuses it may answer, and the
-- function that builds the request. Every rate-limited route may also answer 429.
local routes = {}
local total_weight = 0

local by_name = {}

local function route(name, weight, statuses, build)
    local ok = {}
    for _, s in ipairs(statuses) do ok[s] = true end
    local rt = {name = name, weight = weight, ok = ok, build = build}
    table.insert(routes, rt)
    by_name[name] = rt
    total_weight = total_weight + weight
end

local users = {}          -- {token, email, password}
local anon_ips, auth_ips, nthreads = 0, 0, 1
local stories = {}        -- per identity ("u<i>" or "anon"): see pool()
local cursors = {}        -- per user index: the last next_cursor seen
local big_body            -- a JSON body over the gateway's 64 KiB cap
local last                -- the request in flight: {route, ident, id, as}
local serial = 0

counts = {}               -- "<route> <status>" -> count, read by done()

local function pick(n)
    return math.random(1, n)
end

local function anon_ip()
    local i = pick(anon_ips)
    if i % 16 == 0 then   -- some IPv6 clients: bucketed by their /64
        return string.format("2001:db8:%x:%x::%x", math.floor(i / 256), i % 256, pick(65535))
    end
    return string.format("10.77.%d.%d", math.floor(i / 250), i % 250 + 1)
end

local function auth_ip()
    return string.format("10.78.0.%d", pick(auth_ips))
end

local function headers(ip, token, ctype)
    local h = {["X-Forwarded-For"] = ip}
    if token then h["Authorization"] = "Bearer " .. token end
    if ctype then h["Content-Type"] = ctype end
    -- Some clients ask for RFC 9457 problem documents (their 429 differs).
    if math.random() < 0.1 then h["Accept"] = "application/problem+json" end
    return h
end

-- A user keeps at most USER_STORIES stories: beyond that, the user's next /start-story
-- deletes the oldest instead, so the data (list pages, Redis) reaches a steady size early
-- and the gateway's memory can be compared between warm-up and end. Anonymous stories
-- cannot be deleted (they expire): this thread forgets all but the last ANON_STORIES.
local USER_STORIES, ANON_STORIES = 16, 64

-- IDENT's stories this thread knows, oldest first: {id = ..., closed = bool}; a story is
-- closed once completed or full (its continuations answer 409).
local function pool(ident)
    local p = stories[ident]
    if not p then p = {}; stories[ident] = p end
    return p
end

local function remember(ident, id)
    local p = pool(ident)
    table.insert(p, {id = id, closed = false})
    if ident == "anon" and #p > ANON_STORIES then table.remove(p, 1) end
end

local function forget(ident, id)
    local p = pool(ident)
    for i = #p, 1, -1 do
        if p[i].id == id then table.remove(p, i) end
    end
end

local function close(ident, id)
    for _, e in ipairs(pool(ident)) do
        if e.id == id then e.closed = true end
    end
end

-- A story id of IDENT (an open one when OPEN and there is one), or nil when this thread
-- knows none yet.
local function some_story(ident, open)
    local p = pool(ident)
    if #p == 0 then return nil end
    if open then
        local o = {}
        for _, e in ipairs(p) do
            if not e.closed then table.insert(o, e.id) end
        end
        if #o > 0 then return o[pick(#o)] end
    end
    return p[pick(#p)].id
end

local function json_str(s)
    return '"' .. s:gsub('[%c"\\]', "") .. '"'
end

-- A user of this thread's share (users i with i % nthreads == tid - 1, so that the
-- thread knows many of their stories) and their identity key.
local function some_user()
    local i = tid + nthreads * (pick(math.ceil(#users / nthreads)) - 1)
    if i > #users then i = tid end
    return i, users[i], "u" .. i
end

-- Any user.
local function any_user()
    local i = pick(#users)
    return i, users[i], "u" .. i
end

local function user_get(path, ident, u, extra)
    last = {ident = ident, id = extra}
    return wrk.format("GET", path, headers(anon_ip(), u.token))
end

-- An id no story has, for a story route when this thread knows no story of the caller
-- yet: counted under "no_story" (404), so that the route itself must never answer 404.
local NO_STORY = string.rep("0", 32)

route("healthz", 3, {200}, function()
    return wrk.format("GET", "/healthz", headers(anon_ip()))
end)

route("me_user", 10, {200}, function()
    local _, u, ident = some_user()
    return user_get("/me", ident, u)
end)

route("me_anon", 3, {401}, function()
    return wrk.format("GET", "/me", headers(anon_ip()))
end)

route("me_bad_token", 2, {401}, function()
    local _, u = any_user()
    -- The last signature character changed: a bad signature.
    local t = u.token:sub(1, -2) .. (u.token:sub(-1) == "A" and "B" or "A")
    return wrk.format("GET", "/me", headers(anon_ip(), t))
end)

route("list", 6, {200}, function()
    local _, u, ident = some_user()
    return user_get("/stories?limit=" .. pick(100), ident, u)
end)

route("list_next", 2, {200}, function()
    local i, u, ident = some_user()
    local c = cursors[i]
    if not c then return user_get("/stories?limit=5", ident, u) end
    return user_get("/stories?limit=5&cursor=" .. c, ident, u)
end)

route("list_bad_limit", 1, {422}, function()
    local _, u, ident = some_user()
    return user_get("/stories?limit=" .. (math.random() < 0.5 and "0" or "abc"), ident, u)
end)

route("list_bad_cursor", 1, {422}, function()
    local _, u, ident = some_user()
    return user_get("/stories?cursor=AQAGDnotacursor" .. pick(1000), ident, u)
end)

route("list_anon", 1, {401}, function()
    return wrk.format("GET", "/stories", headers(anon_ip()))
end)

route("no_story", 0, {404}, nil)

route("get_own", 6, {200}, function()
    local _, u, ident = some_user()
    local id = some_story(ident) or NO_STORY
    return user_get("/stories/" .. id, ident, u, id)
end)

route("get_other", 2, {404}, function()
    -- Another user's story (or an anonymous one): 404, never 403.
    local _, u, ident = some_user()
    local _, _, other = any_user()
    local id = other ~= ident and some_story(other) or some_story("anon")
    return user_get("/stories/" .. (id or string.rep("f", 32)), ident, u)
end)

route("get_bad_id", 1, {404}, function()
    local _, u, ident = some_user()
    return user_get("/stories/not-a-story-" .. pick(1000), ident, u)
end)

route("delete_own", 2, {204}, function()
    local _, u, ident = some_user()
    local id = some_story(ident) or NO_STORY
    last = {ident = ident, id = id}
    return wrk.format("DELETE", "/stories/" .. id, headers(anon_ip(), u.token))
end)

local genres = {"fantasy", "mystery", "science fiction", "fairy tale", "adventure", "horror"}

local function start_body(tag)
    return '{"genre":' .. json_str(genres[pick(#genres)]) ..
        ',"characters":' .. json_str(tag .. " and a fox") ..
        ',"opening_line":' .. json_str(math.random() < 0.5 and "" or "The lantern went out.") .. '}'
end

route("delete_oldest", 0, {204}, nil)

route("start_user", 6, {200}, function()
    local _, u, ident = some_user()
    local p = pool(ident)
    if #p >= USER_STORIES then
        last = {ident = ident, id = p[1].id, as = by_name.delete_oldest}
        return wrk.format("DELETE", "/stories/" .. p[1].id, headers(anon_ip(), u.token))
    end
    last = {ident = ident}
    return wrk.format("POST", "/start-story", headers(anon_ip(), u.token, "application/json"),
        start_body(ident))
end)

route("start_anon", 4, {200}, function()
    last = {ident = "anon"}
    return wrk.format("POST", "/start-story", headers(anon_ip(), nil, "application/json"),
        start_body("someone"))
end)

-- A story request of a user (or anonymous) on one of their stories, or a 404 id.
local function story_post(path, ident, token, extra)
    local id = some_story(ident, true) or NO_STORY
    last = {ident = ident, id = id}
    return wrk.format("POST", path, headers(anon_ip(), token, "application/json"),
        '{"story_id":"' .. id .. '"' .. (extra or "") .. '}')
end

local inputs = {"", "The owl finds a door in the roots.", "Rain.", "They argue about the map."}

route("continue_user", 6, {200, 409}, function()
    local _, u, ident = some_user()
    return story_post("/continue-story", ident, u.token,
        ',"user_input":' .. json_str(inputs[pick(#inputs)]))
end)

route("continue_anon", 3, {200, 409}, function()
    return story_post("/continue-story", "anon", nil,
        ',"user_input":' .. json_str(inputs[pick(#inputs)]))
end)

route("end_user", 2, {200, 409}, function()
    local _, u, ident = some_user()
    return story_post("/end-story", ident, u.token)
end)

route("end_anon", 1, {200, 409}, function()
    return story_post("/end-story", "anon", nil)
end)

route("suggest_new", 3, {200}, function()
    return wrk.format("GET", "/suggestions", headers(anon_ip()))
end)

route("suggest_story", 3, {200}, function()
    local _, u, ident = some_user()
    local id = some_story(ident) or NO_STORY
    return user_get("/suggestions?story_id=" .. id, ident, u, id)
end)

route("unknown_path", 2, {404}, function()
    return wrk.format("GET", "/no/such/path/" .. pick(100000), headers(anon_ip()))
end)

route("wrong_method", 2, {405}, function()
    local m = ({"PUT", "PATCH", "GET"})[pick(3)]
    local p = m == "GET" and "/login" or "/me"
    return wrk.format(m, p, headers(anon_ip()))
end)

route("bad_json", 2, {422}, function()
    return wrk.format("POST", "/start-story", headers(anon_ip(), nil, "application/json"),
        '{"genre": "fantasy", "characters": ')
end)

route("bad_types", 1, {422}, function()
    local _, u = any_user()
    return wrk.format("POST", "/continue-story", headers(anon_ip(), u.token, "application/json"),
        '{"story_id": 5, "user_input": ["x"]}')
end)

route("bad_ctype", 1, {415}, function()
    return wrk.format("POST", "/start-story", headers(anon_ip(), nil, "text/plain"), "genre=fantasy")
end)

route("too_big", 1, {413}, function()
    return wrk.format("POST", "/start-story", headers(anon_ip(), nil, "application/json"), big_body)
end)

-- Accounts: charged to the auth tier by address, from the small auth pool.
route("signup_new", 1, {201}, function()
    serial = serial + 1
    local email = string.format("soak-%d-%d-%d@example.com", tid, serial, pick(1000000000))
    return wrk.format("POST", "/signup", headers(auth_ip(), nil, "application/json"),
        '{"email":"' .. email .. '","password":"correct horse battery"}')
end)

route("signup_taken", 1, {409}, function()
    local _, u = any_user()
    return wrk.format("POST", "/signup", headers(auth_ip(), nil, "application/json"),
        '{"email":"' .. u.email .. '","password":"another password"}')
end)

route("signup_bad", 1, {422}, function()
    return wrk.format("POST", "/signup", headers(auth_ip(), nil, "application/json"),
        '{"email":"no-at-sign","password":"short"}')
end)

route("login_json", 1, {200}, function()
    local _, u = any_user()
    return wrk.format("POST", "/login", headers(auth_ip(), nil, "application/json"),
        '{"email":"' .. u.email .. '","password":"' .. u.password .. '"}')
end)

route("login_form", 1, {200}, function()
    local _, u = any_user()
    return wrk.format("POST", "/login",
        headers(auth_ip(), nil, "application/x-www-form-urlencoded"),
        "username=" .. u.email:gsub("@", "%%40") .. "&password=" .. u.password:gsub(" ", "+"))
end)

route("login_wrong", 1, {401}, function()
    -- Unknown addresses: each locks after login_failures.max_failures attempts (429).
    return wrk.format("POST", "/login", headers(auth_ip(), nil, "application/json"),
        '{"email":"ghost' .. pick(16) .. '@example.com","password":"not the password"}')
end)

-- ------------------------------------------------------------------------ running

function init(args)
    local file = assert(io.open(args[1], "r"), "soak.lua: cannot read " .. tostring(args[1]))
    for line in file:lines() do
        local token, email, password = line:match("^(%S+) (%S+) (.+)$")
        if token then table.insert(users, {token = token, email = email, password = password}) end
    end
    file:close()
    assert(#users > 0, "soak.lua: no users in " .. args[1])
    anon_ips = tonumber(args[2]) or 256
    auth_ips = tonumber(args[3]) or 8
    nthreads = tonumber(args[4]) or 1
    assert(#users >= nthreads, "soak.lua: fewer users than threads")
    -- Only these routes (comma-separated names) when given: to find which one leaks.
    if args[5] and args[5] ~= "" then
        local only = {}
        for name in args[5]:gmatch("[^,]+") do
            assert(by_name[name], "soak.lua: no route " .. name)
            only[name] = true
        end
        total_weight = 0
        for _, rt in ipairs(routes) do
            if not only[rt.name] then rt.weight = 0 end
            total_weight = total_weight + rt.weight
        end
    end
    math.randomseed(os.time() * 1000 + tid * 7919)
    big_body = '{"genre":"fantasy","characters":"' .. string.rep("x", 70 * 1024) .. '"}'
end

function request()
    local r = math.random() * total_weight
    local chosen = routes[1]
    for _, rt in ipairs(routes) do
        r = r - rt.weight
        if r < 0 and rt.weight > 0 then chosen = rt; break end
    end
    last = nil
    local req = chosen.build()
    last = last or {}
    last.route = last.id == NO_STORY and by_name.no_story or last.as or chosen
    return req
end

function response(status, headers_, body)
    local l = last
    if not l or not l.route then return end
    local name = l.route.name
    local key = name .. " " .. status
    counts[key] = (counts[key] or 0) + 1
    if status == 429 or status >= 500 then return end
    if name:sub(1, 6) == "start_" and status == 200 then
        local id = body:match('"id":"(%x+)"')
        if id then remember(l.ident, id) end
    elseif l.id and (status == 204 or status == 404) then
        forget(l.ident, l.id)     -- deleted (or never known: NO_STORY)
    elseif l.id and (status == 409 or (name:sub(1, 4) == "end_" and status == 200)) then
        close(l.ident, l.id)      -- completed or full: no more continuations
    elseif name == "list_next" or name == "list" then
        local c = body:match('"next_cursor":"([^"]+)"')
        local i = tonumber(l.ident:sub(2))
        if i then cursors[i] = c end
    end
end

-- -------------------------------------------------------------------------- report

function done(summary, latency, _)
    local total = {}
    for _, t in ipairs(threads) do
        for key, n in pairs(t:get("counts") or {}) do
            total[key] = (total[key] or 0) + n
        end
    end
    local keys = {}
    for key in pairs(total) do table.insert(keys, key) end
    table.sort(keys)
    for _, key in ipairs(keys) do
        local name, status = key:match("^(%S+) (%d+)$")
        local s = tonumber(status)
        io.write(string.format("route %s %s %d\n", name, status, total[key]))
        if s ~= 429 and not by_name[name].ok[s] then
            io.write(string.format("unexpected %s %s %d\n", name, status, total[key]))
        end
    end
    local e = summary.errors
    io.write(string.format("summary %d %d %d %d %d %d %d\n", summary.requests, summary.duration,
        summary.bytes, e.connect, e.read, e.write, e.timeout))
    io.write(string.format("latency %d %d %d\n", latency:percentile(50), latency:percentile(99),
        latency.max))
end
