-- Watchdog: queue a new turn job for a session whose pending turn's lease ran out (its
-- worker died, or the job was lost). ARGV[1] = JSON {sid, now_ms, job}, ARGV[2] = payload.
local a = cjson.decode(ARGV[1])
local score = redis.call('ZSCORE', TURNS, a.sid)
if not score or tonumber(score) > tonumber(a.now_ms) then return 0 end
if redis.call('EXISTS', P .. 'turn:lock:' .. a.sid) == 1 then return 0 end
redis.call('ZREM', TURNS, a.sid)
local eligible, unanswered = turn_state(a.sid)
if not (eligible and unanswered) then return 0 end
return dispatch(a.sid, a.job, ARGV[2], tonumber(a.now_ms))
