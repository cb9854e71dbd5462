-- Route with an Admission: the key's and its team's limits and budgets, and the deployment's, in
-- one atomic step. Loaded after window.lua, deployments.lua, calendar.lua and reservations.lua.
--
-- KEYS[1..n]   key base of each subject: the key, then its team when the team has limits
-- KEYS[n+1..]  candidates' key bases, in priority order
-- ARGV[1..3]   as route.lua: window ms, estimated tokens (for the deployment's tpm), counter TTL ms
-- ARGV[4]      request id (names the reservation)
-- ARGV[5]      the admission's numbers, space-separated (one argument: each argument costs the
--              router's Redis client about a microsecond to encode, a number parsed here less):
--                first     1 on the request's first attempt: check and reserve; 0 on a failover: only pick
--                hold      ms the reservation stands before it expires unsettled
--                tokens    to reserve against tpm (prompt estimate + max output tokens)
--                cost      to reserve against budgets, nano-USD (the most the request may cost)
--                n         subjects, then for each: rpm, tpm, max parallel, daily and monthly budget
--                          (nano-USD); -1 = no such limit (0 is a limit of zero)
--                m         settlements folded in, then for each: used tokens, cost (nano-USD)
-- ARGV[6..5+m] the folded settlements' request ids: earlier requests of the same subjects, settled
--              first as settle.lua would (their settlements rode on the message that brought this
--              request: one script call instead of two, and a parallel slot freed by the request
--              before this one is free for it)
-- ARGV[6+m ..] candidates' rpm and tpm, as route.lua
--
-- Returns, S being the key's {rpm limit, remaining, reset ms, tpm limit, remaining, reset ms} (-1s
-- for a limit it lacks; where it lacks one, admitted answers carry the deployment's instead):
--   {0, S..., chosen, failures, fallback...}             admitted (as route.lua)
--   {1, wait ms} / {2}                                    no deployment (as route.lua)
--   {3, S..., subject, what, limit, used, requested, wait ms}   refused by rpm (what 1), tpm (2),
--                                                               max parallel (3)
--   {4, S..., subject, what, budget, spent, reserved, cost, window end ms}   refused by the daily (1)
--                                                               or monthly (2) budget
--   {5, subject, what, window start ms, window end ms, counter key, ...}   a budget's spend counter
--                                                               is missing: seed each, then call again

local rid = ARGV[4]
local num = {}
for v in string.gmatch(ARGV[5], '%S+') do num[#num + 1] = tonumber(v) end
local first, hold, tokens, cost, n = num[1], num[2], num[3], num[4], num[5]

local m = num[6 + 5 * n]
for f = 1, m do
  local used, fcost = num[5 + 5 * n + 2 * f], num[6 + 5 * n + 2 * f]
  for s = 1, n do settle_on(KEYS[s], ARGV[5 + f], used, fcost) end
end

local limits = {}
local seen = {}  -- per subject: its rpm/tpm window counts as read before anything is taken
for s = 1, n do
  local a = 6 + 5 * (s - 1)
  local l = {
    rpm = num[a], tpm = num[a + 1], parallel = num[a + 2], daily = num[a + 3], monthly = num[a + 4],
  }
  -- Only what settles later needs a reservation record; rpm alone is a plain counter.
  l.holds = l.tpm >= 0 or l.parallel >= 0 or l.daily >= 0 or l.monthly >= 0
  limits[s] = l
  local c = {rcur = 0, rprev = 0, tcur = 0, tprev = 0}
  if l.rpm >= 0 then c.rcur, c.rprev = counts(KEYS[s] .. ':r') end
  if l.tpm >= 0 then c.tcur, c.tprev = counts(KEYS[s] .. ':t') end
  seen[s] = c
end

local function key_states()
  local l, c = limits[1], seen[1]
  local r1, r2, r3 = limit_state(c.rcur, c.rprev, l.rpm)
  local t1, t2, t3 = limit_state(c.tcur, c.tprev, l.tpm)
  return {r1, r2, r3, t1, t2, t3}
end

local function refusal(status, ...)
  local reply = {status}
  for _, v in ipairs(key_states()) do reply[#reply + 1] = v end
  for _, v in ipairs({...}) do reply[#reply + 1] = v end
  return reply
end

local function weighted(cur, prev)
  return math.ceil(prev * prev_weight + cur - 1e-9)
end

-- A failover attempt, or a first attempt seen before (sent twice): the reservation stands.
local admitting = first == 1
if admitting then
  for s = 1, n do
    if limits[s].holds and is_held(KEYS[s], rid) then admitting = false end
  end
end

local windows = nil
if admitting then
  for s = 1, n do
    local base, l, c = KEYS[s], limits[s], seen[s]
    if l.holds then purge(base, now) end
    if l.rpm >= 0 then
      local wait = wait_ms(c.rcur, c.rprev, l.rpm, 1)
      if wait > 0 then return refusal(3, s, 1, l.rpm, weighted(c.rcur, c.rprev), 1, wait) end
    end
    if l.tpm >= 0 then
      local wait = wait_ms(c.tcur, c.tprev, l.tpm, tokens)
      if wait > 0 then return refusal(3, s, 2, l.tpm, weighted(c.tcur, c.tprev), tokens, wait) end
    end
    if l.parallel >= 0 then
      local open = open_count(base, now)
      -- No window frees a parallel slot: a request ending does. A second is a fair first retry.
      if open + 1 > l.parallel then return refusal(3, s, 3, l.parallel, open, 1, 1000) end
    end
  end

  windows = budget_windows(now)
  local seeds = {5}
  local spent = {}
  for s = 1, n do
    local base, l = KEYS[s], limits[s]
    spent[s] = {}
    for what, budget in ipairs({l.daily, l.monthly}) do
      if budget >= 0 then
        local key = what == 1 and (base .. ':sd:' .. windows.day) or (base .. ':sm:' .. windows.month)
        local value = redis.call('GET', key)
        if value then
          spent[s][what] = tonumber(value)
        else
          seeds[#seeds + 1] = s
          seeds[#seeds + 1] = what
          seeds[#seeds + 1] = what == 1 and windows.day_start or windows.month_start
          seeds[#seeds + 1] = what == 1 and windows.day_end or windows.month_end
          seeds[#seeds + 1] = key
        end
      end
    end
  end
  if #seeds > 1 then return seeds end
  for s = 1, n do
    local l = limits[s]
    local reserved = nil
    for what, budget in ipairs({l.daily, l.monthly}) do
      if budget >= 0 then
        reserved = reserved or reserved_cost(KEYS[s])
        if spent[s][what] + reserved + cost > budget then
          local ends = what == 1 and windows.day_end or windows.month_end
          return refusal(4, s, what, budget, spent[s][what], reserved, cost, ends)
        end
      end
    end
  end
end

local reply = pick_deployment(n + 1, 6 + m, tonumber(ARGV[2]))
if reply[1] ~= 0 then return reply end

if admitting then
  for s = 1, n do
    local base, l, c = KEYS[s], limits[s], seen[s]
    if l.rpm >= 0 then
      take(base .. ':r' .. cur_suffix, 1)
      c.rcur = c.rcur + 1
    end
    local taken = 0
    if l.tpm >= 0 and tokens > 0 then
      take(base .. ':t' .. cur_suffix, tokens)
      c.tcur = c.tcur + tokens
      taken = tokens
    end
    if l.holds then
      reserve(base, rid, taken, cost, index, windows.day, windows.month, now + hold)
    end
  end
end

-- The headers show the key's limits where it has them, else the deployment's.
local states = key_states()
for i = 1, 6, 3 do
  if states[i] >= 0 then
    reply[i + 1], reply[i + 2], reply[i + 3] = states[i], states[i + 1], states[i + 2]
  end
end
return reply
