-- Budget windows: the UTC calendar day and month holding a moment (Unix ms from Redis's clock).

local DAY_MS = 86400000
local MONTH_DAYS = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

-- Days since 1970-01-01 -> year, month (1-12), day of month (Howard Hinnant's civil_from_days).
local function civil_from_days(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end

-- {day, day_start, day_end, month, month_start, month_end}: the windows' ids (days since the epoch;
-- year * 12 + month - 1) and their bounds in Unix ms (end exclusive).
local function budget_windows(at)
  local today = math.floor(at / DAY_MS)
  local y, m, d = civil_from_days(today)
  local first = today - d + 1
  local length = MONTH_DAYS[m]
  if m == 2 and (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)) then length = 29 end
  return {
    day = today, day_start = today * DAY_MS, day_end = (today + 1) * DAY_MS,
    month = y * 12 + m - 1, month_start = first * DAY_MS, month_end = (first + length) * DAY_MS,
  }
end
