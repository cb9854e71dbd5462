-- The sliding rate-limit window every routing script shares (concatenated in front of it at load,
-- see router/scripts.py): Redis's clock, the window arithmetic, counters.
--
-- ARGV[1]  window length in ms (60000 in production; shorter in tests)
-- ARGV[3]  TTL in ms for counter keys
--
-- Rate limit: a sliding window approximated from two fixed windows, the previous window's count
-- weighted by how much of it still overlaps the sliding window. Chosen over a sorted-set log
-- because it is O(1) in memory and time per limit (a log holds one member per request, and
-- rpm may be 100k), and because token limits are plain INCRBYs here, where a log would need one
-- member per request carrying its token count. It assumes requests spread evenly over the previous
-- window, which errs by a few percent at most.

local t = redis.call('TIME')  -- Redis's clock, so every replica agrees on the window
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local ttl = ARGV[3]
local index = math.floor(now / window)
local elapsed = now - index * window
local prev_weight = (window - elapsed) / window
local cur_suffix = ':' .. index
local prev_suffix = ':' .. (index - 1)

local function counts(base)
  local cur = tonumber(redis.call('GET', base .. cur_suffix) or '0')
  local prev = tonumber(redis.call('GET', base .. prev_suffix) or '0')
  return cur, prev
end

-- ms until `amount` more fits under `limit` (0 = fits now). A request larger than the whole limit
-- is treated as exactly the limit: it goes through once the window is empty rather than never.
local function wait_ms(cur, prev, limit, amount)
  if limit <= 0 then return window end  -- a key's limit of zero: nothing is ever admitted
  if amount > limit then amount = limit end
  if prev * prev_weight + cur + amount <= limit then return 0 end
  if cur + amount <= limit then
    -- Fits later in this window, once the previous window's share has decayed enough.
    local at = window * (1 - (limit - cur - amount) / prev)
    return math.max(1, math.ceil(at - elapsed))
  end
  -- Only in the next window, where this window's count becomes the decaying share.
  local at = window * (1 - (limit - amount) / cur)
  if at < 0 then at = 0 end
  return (window - elapsed) + math.ceil(at)
end

local function take(key, amount)
  -- Only a counter this call created needs its expiry (every counter is created here, with one).
  if redis.call('INCRBY', key, amount) == amount then redis.call('PEXPIRE', key, ttl) end
end

-- A limit's state for OpenAI's x-ratelimit-* headers: limit, what is left, ms until the whole limit
-- is free again (this window's count weighs on through the next one). -1s when there is no limit.
local function limit_state(cur, prev, limit)
  if limit < 0 then return -1, -1, -1 end
  local remaining = math.floor(limit - prev * prev_weight - cur)
  if remaining < 0 then remaining = 0 end
  local reset = 0
  if cur > 0 then
    reset = 2 * window - elapsed
  elseif prev > 0 then
    reset = window - elapsed
  end
  return limit, remaining, reset
end
