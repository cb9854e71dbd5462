-- Picking a deployment, shared by Route's scripts (after window.lua): the first candidate that is
-- not cooling down and has room under its rpm/tpm takes a slot; the other usable ones are listed.
--
-- KEYS[first_key + i - 1]   key base of candidate i, in priority order (e.g. "mr:dep:<deployment id>")
-- ARGV[first_arg + 2i - 2], ARGV[first_arg + 2i - 1]   rpm and tpm of candidate i (0 = no limit)
-- cost   the request's estimated tokens (counted against tpm)
--
-- Returns {0, rpm limit, remaining, reset ms, tpm limit, remaining, reset ms (the chosen's, -1s when
--          it has none), chosen index, chosen's consecutive failures, fallback index...}  (1-based)
--      or {1, ms until the earliest rate-limited candidate frees a slot}
--      or {2}  (nothing usable: every candidate is cooling down)

local function pick_deployment(first_key, first_arg, cost)
  local chosen = 0
  local failures = 0
  local fallbacks = {}
  local earliest = -1
  local reply = {0, -1, -1, -1, -1, -1, -1}

  for i = 1, #KEYS - first_key + 1 do
    local base = KEYS[first_key + i - 1]
    if redis.call('EXISTS', base .. ':cd') == 0 then
      local rpm = tonumber(ARGV[first_arg + 2 * i - 2])
      local tpm = tonumber(ARGV[first_arg + 2 * i - 1])
      local wait = 0
      local rcur, rprev, tcur, tprev
      if rpm > 0 then
        rcur, rprev = counts(base .. ':r')
        wait = wait_ms(rcur, rprev, rpm, 1)
      end
      if tpm > 0 and cost > 0 then
        tcur, tprev = counts(base .. ':t')
        wait = math.max(wait, wait_ms(tcur, tprev, tpm, cost))
      end
      if wait == 0 then
        if chosen == 0 then
          chosen = i
          if rpm > 0 then
            take(base .. ':r' .. cur_suffix, 1)
            reply[2], reply[3], reply[4] = limit_state(rcur + 1, rprev, rpm)
          end
          if tpm > 0 then
            if cost > 0 then
              take(base .. ':t' .. cur_suffix, cost)
            else
              tcur, tprev = counts(base .. ':t')
            end
            reply[5], reply[6], reply[7] = limit_state(tcur + cost, tprev, tpm)
          end
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
    reply[8], reply[9] = chosen, failures
    for _, i in ipairs(fallbacks) do reply[#reply + 1] = i end
    return reply
  end
  if earliest >= 0 then
    return {1, earliest}
  end
  return {2}
end
