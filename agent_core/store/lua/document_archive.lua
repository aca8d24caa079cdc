-- Archive a document (idempotent); retrieval caches see the change through kversion.
-- ARGV = id, now_iso. Returns 0 for an unknown document.
local doc = P .. 'kdoc:' .. ARGV[1]
if redis.call('EXISTS', doc) == 0 then return 0 end
if redis.call('HGET', doc, 'archived') ~= '1' then
  redis.call('HSET', doc, 'archived', '1', 'archived_at', ARGV[2])
  redis.call('INCR', P .. 'kversion')
end
return 1
