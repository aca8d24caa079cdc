-- Replace one stored message if it is still what the caller read (delivery updates).
-- ARGV = session id, seq, expected JSON, new JSON
local key = P .. 'm:' .. ARGV[1]
if redis.call('HGET', key, ARGV[2]) ~= ARGV[3] then return 0 end
redis.call('HSET', key, ARGV[2], ARGV[4])
-- Open consoles show the new delivery status.
notice('{"type":"message_updated","session_id":' .. cjson.encode(ARGV[1]) .. ',"seq":' .. tonumber(ARGV[2]) .. '}')
return 1
