-- Settle: end one request's reservations with what it really used. Idempotent: the reservation
-- record is the proof it is still open, and it is removed here. Loaded after reservations.lua.
--
-- KEYS[i]  key base of each subject that may hold the request: its key, its team
-- ARGV[1]  request id
-- ARGV[2]  tokens really used (prompt + completion): they stay counted in the tpm window, the rest
--          of the reserved tokens go back
-- ARGV[3]  real cost, nano-USD, added to the spend counters of the windows it was admitted in
--
-- Returns the number of subjects whose reservation it ended (0: settled already, or expired).

local rid = ARGV[1]
local used = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local ended = 0
for s = 1, #KEYS do
  ended = ended + settle_on(KEYS[s], rid, used, cost)
end
return ended
