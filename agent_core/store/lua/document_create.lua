-- Store a knowledge document (documents.py:create): `ready` with its chunks, or `indexing`
-- with its text and the job that will chunk it.
-- ARGV[1] = JSON {id, fields (flat), sha256, created_ms, dedupe, chunks (count)},
-- ARGV[2] = the text to index later ('' when indexed now), ARGV[3 .. 2 + chunks] = chunk
-- texts, then the index job (lib.lua jobs_at).
local a = cjson.decode(ARGV[1])
local doc = P .. 'kdoc:' .. a.id
local by_hash = P .. 'kdochash:' .. a.sha256
if a.dedupe then
  local existing = redis.call('GET', by_hash)
  if existing then
    local v = redis.call('HMGET', P .. 'kdoc:' .. existing, 'archived', 'status')
    if v[1] == '0' and v[2] ~= 'failed' then return {'exists', existing} end
  end
end
if redis.call('EXISTS', doc) == 1 then return {'conflict', a.id} end
redis.call('HSET', doc, unpack(a.fields))
push_range(P .. 'kchunks:' .. a.id, 3, 2 + a.chunks)
if ARGV[2] ~= '' then redis.call('SET', P .. 'kraw:' .. a.id, ARGV[2]) end
redis.call('ZADD', P .. 'kdocs', a.created_ms, a.id)
redis.call('SET', by_hash, a.id)
queue_work('', jobs_at(3 + a.chunks), a.created_ms)
redis.call('INCR', P .. 'kversion')
return {'ok', a.id}
