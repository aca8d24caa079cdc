-- POST /v1/chat/session: close the customer's open session (if any) and open a new one.
-- ARGV[1] = JSON {agent_id, customer_id, now_ms, now_iso, new_session (see lib.lua
--                 new_session), welcome (message JSON without opening brace, or ''),
--                 close (flat field changes that close the previous session)},
-- ARGV[2..] = the summary job of a session it closes (lib.lua jobs_at).
local a = cjson.decode(ARGV[1])
local rt = redis.call('HMGET', P .. 'agentrt:' .. a.agent_id, 'status', 'num', 'initial_state')
if not rt[1] then return {'no_agent'} end
if rt[1] ~= 'active' then return {'archived'} end

local closed = ''
local prev = redis.call('HGET', P .. 'open:' .. a.agent_id, a.customer_id)
if prev then
  sess_write(prev, a.close, a.now_iso)
  queue_work(prev, jobs_at(2), a.now_ms)
  redis.call('ZREM', TURNS, prev)
  closed = prev
end

local sid = a.new_session.id
sess_write(sid, new_session(a.new_session, a.agent_id, rt[2], rt[3], a.now_ms, a.now_iso), a.now_iso)
if a.welcome ~= '' then msg_append(sid, a.agent_id, a.welcome, a.now_iso) end
return {'ok', sid, closed}
