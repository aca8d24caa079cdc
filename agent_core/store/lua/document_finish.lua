-- Store the chunks of an `indexing` document and make it ready, or mark it failed; its
-- index task is done either way. ARGV = id, status, error, chunk texts...
local doc = P .. 'kdoc:' .. ARGV[1]
redis.call('ZREM', P .. 'tasks', 'index:' .. ARGV[1])
if redis.call('HGET', doc, 'status') ~= 'indexing' then return 0 end
local chunks = P .. 'kchunks:' .. ARGV[1]
redis.call('DEL', chunks)
local n = 0
if ARGV[2] == 'ready' then
  push_range(chunks, 4, #ARGV)
  n = #ARGV - 3
end
redis.call('HSET', doc, 'status', ARGV[2], 'chunks', n, 'error', ARGV[3])
redis.call('DEL', P .. 'kraw:' .. ARGV[1])
redis.call('INCR', P .. 'kversion')
return 1
