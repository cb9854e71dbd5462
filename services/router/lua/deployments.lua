-- Picking a deployment, shared by Route's scripts (after window.lua): among the candidates that are
-- neither cooling down nor ejected and have room under their rpm/tpm, the model's strategy chooses
-- one, which takes a slot; the other usable ones are listed in candidate order.
--
-- KEYS[first_key + i - 1]   key base of candidate i, in the model's order (e.g. "mr:dep:<deployment id>")
-- ARGV[first_arg + 2i - 2], ARGV[first_arg + 2i - 1]   rpm and tpm of candidate i (0 = no limit)
-- ARGV[first_arg + 2n]      the strategy, absent for priority and cost (their order is the
--                           candidates' order): "w" weighted, "b" least-busy, "l" latency
-- ARGV[first_arg + 2n + i]  with "w": candidate i's weight
-- cost   the request's estimated tokens (counted against tpm)
--
-- Per deployment, besides window.lua's counters (router/state.py lists them all):
--   <base>:cd     present while the upstream asked it to rest (429 Retry-After, quota gone)
--   <base>:ej     ejected until this ms (health.lua); past it, one request probes it (<base>:probe)
--   <base>:fails  consecutive failures
--   <base>:s      hash: n (requests picked), f (in flight), at (when f last changed), cw (weighted's
--                 running weight), and what outcome reports add (health.lua)
--
-- Returns {0, rpm limit, remaining, reset ms, tpm limit, remaining, reset ms (the chosen's, -1s when
--          it has none), chosen index, chosen's consecutive failures, fallback index...}  (1-based)
--      or {1, ms until the earliest rate-limited candidate frees a slot}
--      or {2}  (nothing usable: every candidate is cooling down or ejected)

-- Statistics outlive a quiet day, then go (every key the router writes expires).
local STATS_TTL_MS = 86400000

-- An in-flight count no outcome has touched for this long is a leak (a gateway that died with
-- requests open never reports them): it counts as zero and starts again.
local IN_FLIGHT_STALE_MS = 600000

local function in_flight(stats)
  local fields = redis.call('HMGET', stats, 'f', 'at')
  local count = tonumber(fields[1] or '0')
  if count > 0 and now - tonumber(fields[2] or '0') > IN_FLIGHT_STALE_MS then
    redis.call('HSET', stats, 'f', 0, 'at', now)
    return 0
  end
  return count
end

local function least(usable, field)
  local best, best_value = nil, nil
  for _, u in ipairs(usable) do
    local value
    if field == 'f' then
      value = in_flight(u.base .. ':s')
    else
      value = tonumber(redis.call('HGET', u.base .. ':s', field) or '0')
    end
    -- Strictly less: ties go to the earlier candidate (priority order).
    if best == nil or value < best_value then best, best_value = u, value end
  end
  return best
end

-- Smooth weighted round robin (as nginx does it): exact shares over any run of picks, and the state
-- lives in Redis, so every replica's picks count towards the same split.
local function weighted(usable, weight_at)
  local total, best, best_cw = 0, nil, nil
  for _, u in ipairs(usable) do
    local w = tonumber(ARGV[weight_at + u.i])
    total = total + w
    local cw = tonumber(redis.call('HINCRBYFLOAT', u.base .. ':s', 'cw', w))
    if best == nil or cw > best_cw then best, best_cw = u, cw end
  end
  redis.call('HINCRBYFLOAT', best.base .. ':s', 'cw', -total)
  return best
end

local function pick_deployment(first_key, first_arg, cost)
  local n = #KEYS - first_key + 1
  local strategy = ARGV[first_arg + 2 * n]
  local usable = {}
  local probe = nil
  local earliest = -1

  for i = 1, n do
    local base = KEYS[first_key + i - 1]
    -- One call for both marks: this loop is the hot path of every Route.
    local marks = redis.call('MGET', base .. ':cd', base .. ':ej', base .. ':fails')
    local ejected = marks[2]
    local out = marks[1] ~= false
    local probing = false
    if ejected and not out then
      -- Ejected: out until its time is up, then one request at a time probes it (the lock outlives a
      -- lost probe by the counter TTL at most).
      out = now < tonumber(ejected) or probe ~= nil
      probing = not out
    end
    if not out then
      local rpm = tonumber(ARGV[first_arg + 2 * i - 2])
      local tpm = tonumber(ARGV[first_arg + 2 * i - 1])
      local u = {i = i, base = base, rpm = rpm, tpm = tpm, fails = marks[3]}
      local wait = 0
      if rpm > 0 then
        u.rcur, u.rprev = counts(base .. ':r')
        wait = wait_ms(u.rcur, u.rprev, rpm, 1)
      end
      if tpm > 0 and cost > 0 then
        u.tcur, u.tprev = counts(base .. ':t')
        wait = math.max(wait, wait_ms(u.tcur, u.tprev, tpm, cost))
      end
      if wait == 0 then
        if not probing then
          usable[#usable + 1] = u
        elseif redis.call('SET', base .. ':probe', '1', 'NX', 'PX', ttl) then
          probe = u
        end
      elseif earliest < 0 or wait < earliest then
        earliest = wait
      end
    end
  end

  local chosen = probe
  if chosen == nil and #usable > 0 then
    if strategy == 'w' then
      chosen = weighted(usable, first_arg + 2 * n)
    elseif strategy == 'b' then
      chosen = least(usable, 'f')
    elseif strategy == 'l' then
      chosen = least(usable, 'le')
    else
      chosen = usable[1]
    end
  end
  if chosen == nil then
    if earliest >= 0 then return {1, earliest} end
    return {2}
  end

  local reply = {0, -1, -1, -1, -1, -1, -1}
  local base = chosen.base
  if chosen.rpm > 0 then
    take(base .. ':r' .. cur_suffix, 1)
    reply[2], reply[3], reply[4] = limit_state(chosen.rcur + 1, chosen.rprev, chosen.rpm)
  end
  if chosen.tpm > 0 then
    if cost > 0 then
      take(base .. ':t' .. cur_suffix, cost)
    else
      chosen.tcur, chosen.tprev = counts(base .. ':t')
    end
    reply[5], reply[6], reply[7] = limit_state(chosen.tcur + cost, chosen.tprev, chosen.tpm)
  end
  local picked = redis.call('HINCRBY', base .. ':s', 'n', 1)
  if strategy == 'b' or strategy == 'l' then
    -- These strategies' targets report every outcome, which ends the request's count (health.lua);
    -- `at` dates the count's last change, for in_flight's leak check.
    redis.call('HINCRBY', base .. ':s', 'f', 1)
    redis.call('HSET', base .. ':s', 'at', now)
  end
  -- Kept alive while in use; refreshing it every 100th pick is enough for a day's TTL.
  if picked % 100 == 1 then redis.call('PEXPIRE', base .. ':s', STATS_TTL_MS) end
  reply[8] = chosen.i
  reply[9] = tonumber(chosen.fails or '0')
  for _, u in ipairs(usable) do
    if u ~= chosen then reply[#reply + 1] = u.i end
  end
  return reply
end
