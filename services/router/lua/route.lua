-- Route: pick the first usable deployment, take a rate-limit slot on it, list the other usable ones.
-- One atomic call per Route, so concurrent router replicas never both take the last slot.
--
-- KEYS[i]  key base of candidate i, in priority order (e.g. "mr:dep:<deployment id>")
-- ARGV[1]  window length in ms (60000 in production; shorter in tests)
-- ARGV[2]  estimated tokens of this request (counted against tpm)
-- ARGV[3]  TTL in ms for counter keys
-- ARGV[2+2i], ARGV[3+2i]  rpm and tpm of candidate i (0 = no limit)
--
-- Returns {0, chosen index, chosen's consecutive failures, fallback index...}  (1-based indexes)
--      or {1, ms until the earliest rate-limited candidate frees a slot}
--      or {2}  (nothing usable: every candidate is cooling down)
--
-- Rate limit: a sliding window approximated from two fixed windows, the previous window's count
-- weighted by how much of it still overlaps the sliding window. Chosen over a sorted-set log
-- because it is O(1) in memory and time per deployment (a log holds one member per request, and
-- rpm may be 100k), and because token limits are plain INCRBYs here, where a log would need one
-- member per request carrying its token count. It assumes requests spread evenly over the previous
-- window, which errs by a few percent at most.

local t = redis.call('TIME')  -- Redis's clock, so every replica agrees on the window
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
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
  redis.call('INCRBY', key, amount)
  redis.call('PEXPIRE', key, ttl)
end

local chosen = 0
local failures = 0
local fallbacks = {}
local earliest = -1

for i = 1, #KEYS do
  local base = KEYS[i]
  if redis.call('EXISTS', base .. ':cd') == 0 then
    local rpm = tonumber(ARGV[2 + 2 * i])
    local tpm = tonumber(ARGV[3 + 2 * i])
    local wait = 0
    if rpm > 0 then
      local cur, prev = counts(base .. ':r')
      wait = wait_ms(cur, prev, rpm, 1)
    end
    if tpm > 0 and cost > 0 then
      local cur, prev = counts(base .. ':t')
      wait = math.max(wait, wait_ms(cur, prev, tpm, cost))
    end
    if wait == 0 then
      if chosen == 0 then
        chosen = i
        if rpm > 0 then take(base .. ':r' .. cur_suffix, 1) end
        if tpm > 0 and cost > 0 then take(base .. ':t' .. cur_suffix, cost) end
        failures = tonumber(redis.call('GET', base .. ':fails') or '0')
      else
        fallbacks[#fallbacks + 1] = i
      end
    elseif chosen == 0 and (earliest < 0 or wait < earliest) then
      earliest = wait
    end
  end
end

if chosen > 0 then
  local reply = {0, chosen, failures}
  for _, i in ipairs(fallbacks) do reply[#reply + 1] = i end
  return reply
end
if earliest >= 0 then
  return {1, earliest}
end
return {2}
