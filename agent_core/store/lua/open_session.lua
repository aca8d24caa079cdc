-- POST /v1/chat/session: close the customer's open session (if any) and open a new one.
-- ARGV[1] = JSON {agent_id, customer_id, now_ms, now_iso, new_session{id, fields},
--                 welcome (message JSON without opening brace, or ''), summary_task}
local a = cjson.decode(ARGV[1])
local rt = redis.call('HMGET', P .. 'agentrt:' .. a.agent_id, 'status', 'num', 'initial_state')
if not rt[1] then return {'no_agent'} end
if rt[1] ~= 'active' then return {'archived'} end

local closed = ''
local prev = redis.call('HGET', P .. 'open:' .. a.agent_id, a.customer_id)
if prev then
  sess_write(prev, {'status', 'closed', 'closed_reason', 'replaced', 'closed_at', a.now_iso,
                    'help_requested', '0', 'mode', 'ai', 'active_human', ''}, a.now_iso)
  redis.call('ZADD', P .. 'tasks', a.now_ms, 'summary:' .. prev)
  redis.call('ZREM', TURNS, prev)
  closed = prev
end

local sid = a.new_session.id
local f = a.new_session.fields
for _, kv in ipairs({
  {'agent_id', a.agent_id}, {'chat_agent_id', rt[2]}, {'current_state', rt[3]},
  {'activity_ms', a.now_ms}, {'created_at', a.now_iso}, {'last_activity_at', a.now_iso},
}) do
  f[#f + 1] = kv[1]
  f[#f + 1] = kv[2]
end
sess_write(sid, f, a.now_iso)
if a.welcome ~= '' then msg_append(sid, a.agent_id, a.welcome, a.now_iso) end
return {'ok', sid, closed}
