-- End of a turn job's loop: release the session's pending-turn slot and the turn lock
-- together, unless a customer message the AI should answer is still waiting (then the
-- caller loops again). Atomic with ingest, so a new message is either seen here or
-- queues a job of its own, which will find the lock free.
-- On release it publishes the turn's final notice: every customer message up to
-- settled_upto is settled (answered, or not for the AI to answer); later ones belong to a
-- later turn. ARGV[1] = session id, ARGV[2] = lock token. Returns {'done', settled_upto}.
local sid = ARGV[1]
local eligible, unanswered = turn_state(sid)
if eligible and unanswered then return {'again'} end
redis.call('ZREM', TURNS, sid)
local lock = P .. 'turn:lock:' .. sid
if redis.call('GET', lock) == ARGV[2] then redis.call('DEL', lock) end
local s = redis.call('HMGET', P .. 's:' .. sid, 'last_cust_seq', 'answered_seq', 'mode', 'help_requested',
  'current_state', 'status', 'agent_id')
if not s[6] then return {'done', '0'} end
redis.call('PUBLISH', P .. 'notify:turns', cjson.encode({
  type = 'turn', session_id = sid, agent_id = s[7], final = true, settled_upto = tonumber(s[1] or '0'),
  answered_upto = tonumber(s[2] or '0'), reply = cjson.null, reply_seq = cjson.null, mode = s[3],
  help_requested = s[4] == '1', state = s[5] ~= '' and s[5] or 'default', status = s[6],
}))
return {'done', s[1] or '0'}
