-- One change to an escalation call and what it brings to its session, atomically:
-- dedupe (a status callback's CallSid+CallStatus), never backwards (status rank), a
-- once-only flag (the call's outcome is written into the chat exactly once), call fields,
-- transcript entries, the CallSid mapping, clearing the session's live call, chat messages
-- and a context entry (only while the session is open), a customer memory entry, an event
-- and the follow-up jobs. ARGV[1] = JSON params (agent_core/store/calls.py:write), ARGV[2..] = jobs.
local a = cjson.decode(ARGV[1])
local ckey = P .. 'call:' .. a.call_id
local cur = redis.call('HMGET', ckey, 'status', 'session_id', 'agent_id')
if not cur[1] then return {'missing'} end
local RANK = {queued = 0, ringing = 1, ['in-progress'] = 2}
if a.dedupe ~= '' then
  if not redis.call('SET', a.dedupe, '1', 'NX', 'EX', a.dedupe_ttl) then return {'dup', cur[1]} end
end
if a.rank >= 0 and (RANK[cur[1]] or 3) >= a.rank then return {'stale', cur[1]} end
if a.once ~= '' then
  if redis.call('HGET', ckey, a.once) == '1' then return {'flagged', cur[1]} end
  redis.call('HSET', ckey, a.once, '1')
end
local sid, agent_id = cur[2], cur[3]
if #a.set > 0 then redis.call('HSET', ckey, unpack(a.set)) end
if a.set_missing and #a.set_missing > 0 then
  for i = 1, #a.set_missing, 2 do redis.call('HSETNX', ckey, a.set_missing[i], a.set_missing[i + 1]) end
end
for _, entry in ipairs(a.transcript) do redis.call('RPUSH', P .. 'calltx:' .. a.call_id, entry) end
if a.map_sid ~= '' then redis.call('SET', P .. 'callsid:' .. a.map_sid, a.call_id, 'EX', a.map_ttl) end

local skey = P .. 's:' .. sid
local sstatus = redis.call('HGET', skey, 'status')
local changes = {}
if a.clear_live and sstatus and redis.call('HGET', skey, 'live_call') == a.call_id then
  changes[#changes + 1] = 'live_call'
  changes[#changes + 1] = ''
end
local appended = false
if sstatus and sstatus ~= 'closed' then
  for _, rest in ipairs(a.messages) do
    msg_append(sid, agent_id, rest, a.now_iso)
    appended = true
  end
  if a.context ~= '' then
    local ctx = cjson.decode(redis.call('HGET', skey, 'context') or '[]')
    ctx[#ctx + 1] = a.context
    local keep = {}
    for i = math.max(1, #ctx - a.context_keep + 1), #ctx do keep[#keep + 1] = ctx[i] end
    changes[#changes + 1] = 'context'
    changes[#changes + 1] = cjson.encode(keep)
  end
  if appended then
    changes[#changes + 1] = 'last_activity_at'
    changes[#changes + 1] = a.now_iso
    changes[#changes + 1] = 'activity_ms'
    changes[#changes + 1] = a.now_ms
  end
end
if #changes > 0 then sess_write(sid, changes, a.now_iso) end
if a.memory_key ~= '' then
  redis.call('LPUSH', a.memory_key, a.memory_entry)
  redis.call('LTRIM', a.memory_key, 0, a.memory_keep - 1)
end
if a.event_type ~= '' then emit(agent_id, a.event_type, sid, a.event_data, a.now_iso) end
local jobs = {}
for _, job in ipairs(jobs_at(2)) do
  if job.task ~= 'deliver' or appended then jobs[#jobs + 1] = job end
end
queue_work(sid, jobs, tonumber(a.now_ms))
local status = redis.call('HGET', ckey, 'status')
if status ~= cur[1] then
  notice('{"type":"call","session_id":"' .. sid .. '","agent_id":"' .. agent_id .. '","call_id":"' .. a.call_id ..
    '","status":"' .. status .. '"}')
end
return {'ok', status, appended and '1' or '0'}
