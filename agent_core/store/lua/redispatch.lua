-- Watchdog: queue a new turn job for a session whose pending turn's lease ran out (its
-- worker died, or the job was lost). ARGV[1] = session id, ARGV[2] = now_ms, ARGV[3..] = the
-- turn's job (lib.lua jobs_at).
local a = {sid = ARGV[1], now_ms = ARGV[2]}
local score = redis.call('ZSCORE', TURNS, a.sid)
if not score or tonumber(score) > tonumber(a.now_ms) then return 0 end
if redis.call('EXISTS', P .. 'turn:lock:' .. a.sid) == 1 then return 0 end
redis.call('ZREM', TURNS, a.sid)
local eligible, unanswered = turn_state(a.sid)
if not (eligible and unanswered) then return 0 end
return dispatch(a.sid, jobs_at(3)[1], tonumber(a.now_ms))
