-- A session's fields and whether the AI would answer it now (lib.lua turn_state), read
-- together so Python never restates the rule. ARGV[1] = session id.
-- Returns the HGETALL pairs followed by '_eligible', '1' | '0' (empty when there is none).
local h = redis.call('HGETALL', P .. 's:' .. ARGV[1])
if #h == 0 then return h end
local eligible = turn_state(ARGV[1])
h[#h + 1] = '_eligible'
h[#h + 1] = eligible and '1' or '0'
return h
