-- ARGV = session id, token
local lock = P .. 'turn:lock:' .. ARGV[1]
if redis.call('GET', lock) == ARGV[2] then return redis.call('DEL', lock) end
return 0
