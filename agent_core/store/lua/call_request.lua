-- Atomic check-and-set of an escalation call (SPEC §8: never two live calls per session):
-- refuses a missing, closed or opted-out session and one whose call is still live; else
-- stores the call, indexes it, marks it the session's live call and queues its job.
-- ARGV[1] = JSON {sid, call_id, fields (flat), now_iso, now_ms}, ARGV[2..] = jobs.
local a = cjson.decode(ARGV[1])
local skey = P .. 's:' .. a.sid
local v = redis.call('HMGET', skey, 'status', 'opted_out', 'opted_out:sms', 'opted_out:whatsapp', 'live_call',
  'agent_id')
if not v[1] then return {'missing'} end
if v[1] == 'closed' then return {'closed'} end
if v[2] == '1' or v[3] == '1' or v[4] == '1' then return {'opted_out'} end
if v[5] and v[5] ~= '' then
  local st = redis.call('HGET', P .. 'call:' .. v[5], 'status')
  if st == 'queued' or st == 'ringing' or st == 'in-progress' then return {'live', v[5]} end
end
local n = redis.call('INCR', P .. 'callseq')
local ckey = P .. 'call:' .. a.call_id
redis.call('HSET', ckey, unpack(a.fields))
redis.call('HSET', ckey, 'seq', n, 'agent_id', v[6], 'session_id', a.sid)
for _, scope in ipairs({'all', 'agent:' .. v[6], 'session:' .. a.sid}) do
  redis.call('ZADD', P .. 'cix:' .. scope, n, a.call_id)
end
sess_write(a.sid, {'live_call', a.call_id}, a.now_iso)
queue_work(a.sid, jobs_at(2), tonumber(a.now_ms))
notice('{"type":"call","session_id":"' .. a.sid .. '","agent_id":"' .. v[6] .. '","call_id":"' .. a.call_id ..
  '","status":"queued"}')
return {'ok', tostring(n)}
