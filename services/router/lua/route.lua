-- Route: pick the first usable deployment, take a rate-limit slot on it, list the other usable ones.
-- One atomic call per Route, so concurrent router replicas never both take the last slot. Loaded
-- after window.lua and deployments.lua (router/scripts.py).
--
-- KEYS[i]  key base of candidate i, in priority order (e.g. "mr:dep:<deployment id>")
-- ARGV[1]  window length in ms (60000 in production; shorter in tests)
-- ARGV[2]  estimated tokens of this request (counted against tpm)
-- ARGV[3]  TTL in ms for counter keys
-- ARGV[2+2i], ARGV[3+2i]  rpm and tpm of candidate i (0 = no limit)
--
-- Returns what pick_deployment returns.

return pick_deployment(1, 4, tonumber(ARGV[2]))
