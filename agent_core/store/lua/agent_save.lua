-- Create or update an agent with its routing entries, refusing numbers another agent owns.
-- ARGV[1] = JSON {id, expect ('' when creating), json, rt{flat}, routes_old[], routes_new[],
--                 origins_old[], origins_new[] (widget origins, counted per agent using them), created_ms}
local a = cjson.decode(ARGV[1])
local key = P .. 'agent:' .. a.id
local cur = redis.call('GET', key)
if a.expect == '' then
  if cur then return {'exists'} end
elseif cur ~= a.expect then
  return {'conflict'}
end
for _, r in ipairs(a.routes_new) do
  local owner = redis.call('HGET', P .. 'route', r)
  if owner and owner ~= a.id then return {'route_taken', r, owner} end
end
for _, r in ipairs(a.routes_old) do
  if redis.call('HGET', P .. 'route', r) == a.id then redis.call('HDEL', P .. 'route', r) end
end
for _, r in ipairs(a.routes_new) do redis.call('HSET', P .. 'route', r, a.id) end
for _, o in ipairs(a.origins_old) do
  if redis.call('HINCRBY', P .. 'widget:origins', o, -1) <= 0 then redis.call('HDEL', P .. 'widget:origins', o) end
end
for _, o in ipairs(a.origins_new) do redis.call('HINCRBY', P .. 'widget:origins', o, 1) end
redis.call('SET', key, a.json)
redis.call('HSET', P .. 'agentrt:' .. a.id, unpack(a.rt))
redis.call('ZADD', P .. 'agents', 'NX', a.created_ms, a.id)
return {'ok'}
