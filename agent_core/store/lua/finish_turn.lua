-- End of a turn job's loop: release the session's pending-turn slot and the turn lock
-- together, unless a customer message the AI should answer is still waiting (then the
-- caller loops again). Atomic with ingest, so a new message is either seen here or
-- queues a job of its own, which will find the lock free.
-- ARGV[1] = session id, ARGV[2] = lock token
-- Returns {'done', last_cust_seq}: every customer message up to that seq is settled
-- (answered, or not for the AI to answer); later ones belong to a later turn.
local sid = ARGV[1]
local eligible, unanswered = turn_state(sid)
if eligible and unanswered then return {'again'} end
redis.call('ZREM', TURNS, sid)
local lock = P .. 'turn:lock:' .. sid
if redis.call('GET', lock) == ARGV[2] then redis.call('DEL', lock) end
return {'done', redis.call('HGET', P .. 's:' .. sid, 'last_cust_seq') or '0'}
