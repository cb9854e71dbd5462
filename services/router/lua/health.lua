-- ReportOutcome: one attempt's result into its deployment's health and statistics, atomically.
-- Outlier detection as Envoy does it, shared by every replica. Loaded after window.lua (for `now`).
--
-- KEYS[1]   key base of the deployment (e.g. "mr:dep:<deployment id>")
-- KEYS[2..] key bases of its model's other deployments (the ejection cap counts them)
-- ARGV[1]   "1" on success, "0" on failure
-- ARGV[2]   (window.lua's window length; unused here)
-- ARGV[3]   (window.lua's counter TTL; unused here)
-- ARGV[4]   cooldown in ms the upstream demanded (a 429's Retry-After, or quota gone), 0 if none
-- ARGV[5]   consecutive failures that eject the deployment
-- ARGV[6]   base ejection ms (an ejection lasts base × times ejected ...)
-- ARGV[7]   ... capped at this many ms
-- ARGV[8]   the share of the model's deployments that may be ejected at once (one always stays)
-- ARGV[9]   ms the failure and ejection counters outlive the last failure
-- ARGV[10]  the attempt's latency in ms (0: not measured)
-- ARGV[11]  its time to first token in ms (0: none)
-- ARGV[12]  "1" when the pick counted the attempt in flight (its strategy reports every outcome)
-- ARGV[13]  weight of the newest latency in the EWMAs (0..1)
--
-- Returns 1 if the deployment is healthy (neither ejected nor cooling down) afterwards, else 0.

local base = KEYS[1]
local stats = base .. ':s'
local fails_key = base .. ':fails'
local ejected_key = base .. ':ej'
local cooldown_key = base .. ':cd'
local memory = tonumber(ARGV[9])

if ARGV[12] == '1' then
  if tonumber(redis.call('HINCRBY', stats, 'f', -1)) < 0 then
    redis.call('HSET', stats, 'f', 0)  -- a report from before a Redis flush, or a leak's reset
  end
  redis.call('HSET', stats, 'at', now)
end

local function ewma(field, sample)
  if sample <= 0 then return end
  local alpha = tonumber(ARGV[13])
  local old = redis.call('HGET', stats, field)
  local value = sample
  if old then value = alpha * sample + (1 - alpha) * tonumber(old) end
  redis.call('HSET', stats, field, tostring(value))
end

-- Never shorten a cooldown already running: a late report must not revive a resting deployment.
local function cool_down(ms)
  if redis.call('PTTL', cooldown_key) < ms then
    redis.call('SET', cooldown_key, '1', 'PX', ms)
  end
end

local function eject()
  local times = redis.call('INCR', base .. ':nej')
  redis.call('PEXPIRE', base .. ':nej', memory)
  local ms = math.min(tonumber(ARGV[6]) * times, tonumber(ARGV[7]))
  -- The key outlives the ejection so the deployment stays out until a probe succeeds.
  redis.call('SET', ejected_key, tostring(now + ms), 'PX', ms + memory)
  redis.call('DEL', base .. ':probe')
end

if ARGV[1] == '1' then
  redis.call('HINCRBY', stats, 'ok', 1)
  local latency, ttft = tonumber(ARGV[10]), tonumber(ARGV[11])
  if latency > 0 then
    redis.call('HINCRBYFLOAT', stats, 'ls', latency)
    redis.call('HINCRBY', stats, 'ln', 1)
    ewma('le', latency)
  end
  if ttft > 0 then
    redis.call('HINCRBYFLOAT', stats, 'ts', ttft)
    redis.call('HINCRBY', stats, 'tn', 1)
    ewma('te', ttft)
  end
  -- A success closes everything: a probe that worked brings the deployment back.
  redis.call('DEL', fails_key, ejected_key, base .. ':probe')
else
  redis.call('HINCRBY', stats, 'ko', 1)
  local demanded = tonumber(ARGV[4])
  if demanded > 0 then
    cool_down(demanded)
  else
    local fails = redis.call('INCR', fails_key)
    redis.call('PEXPIRE', fails_key, memory)
    if redis.call('EXISTS', ejected_key) == 1 then
      -- Its probe failed: out again, for longer.
      eject()
    elseif fails >= tonumber(ARGV[5]) then
      local total = #KEYS
      local allowed = math.min(math.floor(tonumber(ARGV[8]) * total + 1e-9), total - 1)
      local out = 0
      for k = 2, total do
        if redis.call('EXISTS', KEYS[k] .. ':ej') == 1 then out = out + 1 end
      end
      -- Over the cap it stays in rotation, its failures still counted: the next one tries again.
      if out < allowed then eject() end
    end
  end
end
redis.call('PEXPIRE', stats, 86400000)

local ejected = redis.call('GET', ejected_key)
local out = redis.call('EXISTS', cooldown_key) == 1 or (ejected and now < tonumber(ejected))
return out and 0 or 1
