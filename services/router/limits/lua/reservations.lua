-- Open reservations of one key or team (its "subject"), under its key base (e.g. "mr:key:<id>"):
--
--   <base>:open   sorted set: request id -> when its reservation expires (Unix ms)
--   <base>:held   hash: request id -> "<tokens> <cost> <tpm window> <day> <month>", what it holds and
--                 the windows it was admitted in; field "$cost" is the sum of the held costs
--   <base>:t:<w>  the tpm window counter the tokens were taken from (window.lua's layout)
--   <base>:sd:<day>, <base>:sm:<month>   spend in nano-USD of a UTC day / month; only ever created by
--                 the router's seed from the usage ledger, never by a script
--
-- The sorted set and the hash always share one expiry time (the latest reservation's expiry plus a
-- margin): neither can outlive the other, so no held amount is ever orphaned.

local COST_SUM = '$cost'
local KEEP_MARGIN_MS = 60000  -- an expired reservation stays purgeable this long

-- Ends one reservation; `used` tokens of it count, the rest go back to its tpm window (while that
-- window still counts). Returns the day and month windows it was admitted in, or nil if `rid` holds
-- nothing here (settled already, expired, or never admitted).
local function release(base, rid, used)
  local held = redis.call('HGET', base .. ':held', rid)
  if not held then return nil end
  local tokens, cost, twin, day, month = string.match(held, '^(%d+) (%d+) (%-?%d+) (%-?%d+) (%-?%d+)$')
  redis.call('HDEL', base .. ':held', rid)
  redis.call('ZREM', base .. ':open', rid)
  cost = tonumber(cost)
  if cost > 0 then redis.call('HINCRBY', base .. ':held', COST_SUM, -cost) end
  tokens = tonumber(tokens)
  if tokens > 0 and tokens ~= used then
    local key = base .. ':t:' .. twin
    if redis.call('EXISTS', key) == 1 and redis.call('DECRBY', key, tokens - used) < 0 then
      redis.call('SET', key, 0, 'KEEPTTL')
    end
  end
  return day, month
end

-- Gives back what expired reservations held (a request whose gateway died never settles). Bounded
-- per call to keep the script short; the rest go on the next admission (and never count meanwhile:
-- open_count only counts unexpired ones, and the cost sum errs on the safe side).
local function purge(base, at)
  local expired = redis.call('ZRANGEBYSCORE', base .. ':open', '-inf', at, 'LIMIT', 0, 64)
  for _, rid in ipairs(expired) do release(base, rid, 0) end
end

local function open_count(base, at)
  return redis.call('ZCOUNT', base .. ':open', '(' .. at, '+inf')
end

local function reserved_cost(base)
  return tonumber(redis.call('HGET', base .. ':held', COST_SUM) or '0')
end

local function is_held(base, rid)
  return redis.call('HEXISTS', base .. ':held', rid) == 1
end

local function reserve(base, rid, tokens, cost, twin, day, month, expires)
  local open, held = base .. ':open', base .. ':held'
  redis.call('ZADD', open, expires, rid)
  redis.call('HSET', held, rid, tokens .. ' ' .. cost .. ' ' .. twin .. ' ' .. day .. ' ' .. month)
  if cost > 0 then redis.call('HINCRBY', held, COST_SUM, cost) end
  -- Rounded up to the margin, so that most reservations find it already far enough and set nothing.
  local keep = math.ceil((expires + KEEP_MARGIN_MS) / KEEP_MARGIN_MS) * KEEP_MARGIN_MS
  local open_until, held_until = redis.call('PEXPIRETIME', open), redis.call('PEXPIRETIME', held)
  if open_until ~= held_until or open_until < keep then
    keep = math.max(keep, open_until, held_until)
    redis.call('PEXPIREAT', open, keep)
    redis.call('PEXPIREAT', held, keep)
  end
end

-- A spend counter grows only if it exists: a missing one is rebuilt from the usage ledger, which
-- has this cost too (creating it here would restart the budget from this one cost).
local function add_spend(key, cost)
  if redis.call('EXISTS', key) == 1 then redis.call('INCRBY', key, cost) end
end

-- Ends request `rid`'s reservation on one subject with what it really used: `used` tokens stay
-- counted, its real `cost` (nano-USD) goes into the spend of the windows it was admitted in.
-- Idempotent (the reservation record is the proof it is still open). Returns 1 if it ended one.
local function settle_on(base, rid, used, cost)
  local day, month = release(base, rid, used)
  if not day then return 0 end
  if cost > 0 then
    add_spend(base .. ':sd:' .. day, cost)
    add_spend(base .. ':sm:' .. month, cost)
  end
  return 1
end
