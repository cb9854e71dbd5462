-- Overview: what every deployment's and asked key's state is, read in one atomic step (no writes),
-- so any replica answers the same. Loaded after window.lua.
--
-- KEYS[1..d]    deployments' key bases
-- KEYS[d+1..]   keys' key bases ("<prefix>key:<id>", as router/limits writes them)
-- ARGV[1], ARGV[3]  window.lua's window length and counter TTL
-- ARGV[4]       d
-- ARGV[3+2i], ARGV[4+2i]  rpm and tpm of deployment i (0 = no limit)
--
-- Returns {now ms, deployment..., key...}; a deployment is {requests, successes, failures, latency
-- sum (string), latency samples, ttft sum (string), ttft samples, in flight, ejected until ms (string,
-- "" when not ejected), ms of cooldown left, consecutive failures, times ejected, rpm limit, remaining,
-- reset ms, tpm limit, remaining, reset ms (-1s: no such limit)}; a key is {requests used, reset ms,
-- tokens used, reset ms} in its sliding windows.

local d = tonumber(ARGV[4])
local reply = {now}

local function field(hash, name)
  return redis.call('HGET', hash, name) or '0'
end

local function used(base)
  local cur, prev = counts(base)
  local _, _, reset = limit_state(cur, prev, 0)
  return math.ceil(prev * prev_weight + cur - 1e-9), reset
end

for i = 1, d do
  local base = KEYS[i]
  local s = base .. ':s'
  local row = {
    tonumber(field(s, 'n')), tonumber(field(s, 'ok')), tonumber(field(s, 'ko')),
    field(s, 'ls'), tonumber(field(s, 'ln')), field(s, 'ts'), tonumber(field(s, 'tn')),
    math.max(0, tonumber(field(s, 'f'))),
    redis.call('GET', base .. ':ej') or '',
    math.max(0, redis.call('PTTL', base .. ':cd')),
    tonumber(redis.call('GET', base .. ':fails') or '0'),
    tonumber(redis.call('GET', base .. ':nej') or '0'),
  }
  for k, limit in ipairs({tonumber(ARGV[3 + 2 * i]), tonumber(ARGV[4 + 2 * i])}) do
    local cur, prev = 0, 0
    if limit > 0 then cur, prev = counts(base .. (k == 1 and ':r' or ':t')) else limit = -1 end
    local a, b, c = limit_state(cur, prev, limit)
    row[#row + 1] = a
    row[#row + 1] = b
    row[#row + 1] = c
  end
  reply[#reply + 1] = row
end

for i = d + 1, #KEYS do
  local ru, rr = used(KEYS[i] .. ':r')
  local tu, tr = used(KEYS[i] .. ':t')
  reply[#reply + 1] = {ru, rr, tu, tr}
end
return reply
