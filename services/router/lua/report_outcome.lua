-- ReportOutcome: feed one attempt's result into a deployment's health, atomically.
--
-- KEYS[1]  key base of the deployment (e.g. "mr:dep:<deployment id>")
-- ARGV[1]  "1" on success, "0" on failure
-- ARGV[2]  cooldown in ms demanded by the upstream (a 429's Retry-After), 0 if none
-- ARGV[3]  consecutive failures that put the deployment in cooldown
-- ARGV[4]  cooldown in ms once that threshold is reached
-- ARGV[5]  ms the failure counter outlives the last failure (so idle counters do not live forever)
--
-- Returns 1 if the deployment is healthy (not cooling down) afterwards, else 0.

local fails_key = KEYS[1] .. ':fails'
local cooldown_key = KEYS[1] .. ':cd'

-- Never shorten a cooldown already running: a late report must not revive a failing deployment.
local function cool_down(ms)
  if redis.call('PTTL', cooldown_key) < ms then
    redis.call('SET', cooldown_key, '1', 'PX', ms)
  end
end

if ARGV[1] == '1' then
  redis.call('DEL', fails_key)
else
  local fails = redis.call('INCR', fails_key)
  redis.call('PEXPIRE', fails_key, ARGV[5])
  local demanded = tonumber(ARGV[2])
  if demanded > 0 then
    cool_down(demanded)
  elseif fails >= tonumber(ARGV[3]) then
    -- The counter stays at or above the threshold, so once the cooldown ends a single further
    -- failure trips it again (half-open), while one success closes it.
    cool_down(tonumber(ARGV[4]))
  end
end

return redis.call('EXISTS', cooldown_key) == 0 and 1 or 0
