-- Acquire or renew a session's turn lock, pushing the pending turn's lease forward.
-- ARGV = session id, token, ttl_ms, now_ms, 'acquire' | 'renew'
local sid, token, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local lock = P .. 'turn:lock:' .. sid
if ARGV[5] == 'acquire' then
  if not redis.call('SET', lock, token, 'NX', 'PX', ttl) then return 0 end
else
  -- Renewing must never re-create a lock that finish_turn released.
  if redis.call('GET', lock) ~= token then return 0 end
  redis.call('PEXPIRE', lock, ttl)
end
if redis.call('ZSCORE', TURNS, sid) then
  redis.call('ZADD', TURNS, tonumber(ARGV[4]) + ttl, sid)
end
return 1
