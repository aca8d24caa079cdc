-- One round trip for an inbound customer message: dedupe, resolve the agent and the
-- customer's open session (creating or waking it), append the message, queue a turn.
-- ARGV[1] = JSON params (see agent_core/store/sessions.py:ingest), ARGV[2] = the message JSON
-- without its opening brace, ARGV[3..] = the turn's job (lib.lua jobs_at).
-- Returns flat name/value pairs (sessions.py:IngestResult).
local a = cjson.decode(ARGV[1])
local now_ms = tonumber(a.now_ms)

for _, k in ipairs(a.dedupe) do
  local seen = redis.call('GET', k)
  if seen then return {'status', 'dup', 'duplicate_of', seen} end
end

local agent_id = a.agent_id
if agent_id == '' then
  for _, addr in ipairs(a.route) do
    agent_id = redis.call('HGET', P .. 'route', addr)
    if agent_id then break end
  end
  if not agent_id then return {'status', 'no_agent'} end
end
local rt = redis.call('HMGET', P .. 'agentrt:' .. agent_id, 'status', 'num', 'initial_state')
if not rt[1] then return {'status', 'no_agent', 'agent_id', agent_id} end
if rt[1] ~= 'active' then return {'status', 'archived', 'agent_id', agent_id} end

local sid = false
if a.session_id ~= '' then
  local s = redis.call('HMGET', P .. 's:' .. a.session_id, 'agent_id', 'customer_id', 'status')
  if not s[1] then return {'status', 'no_session'} end
  if s[1] ~= agent_id or s[2] ~= a.customer_id then return {'status', 'session_mismatch'} end
  if s[3] ~= 'closed' then sid = a.session_id end
end
if not sid then sid = redis.call('HGET', P .. 'open:' .. agent_id, a.customer_id) end

local created = 0
if not sid then
  sid = a.new_session.id
  sess_write(sid, new_session(a.new_session, agent_id, rt[2], rt[3], now_ms, a.now_iso), a.now_iso)
  created = 1
end

local seq = msg_append(sid, agent_id, ARGV[2], a.now_iso)
local changes = {'last_activity_at', a.now_iso, 'activity_ms', now_ms}
-- While opted out, messages are kept for operators but the AI does not answer them.
local counts = a.kind == 'message' and redis.call('HGET', P .. 's:' .. sid, 'opted_out') ~= '1'
if counts then
  -- Carrier keywords (STOP, START, HELP) are stored for the record but never answered by
  -- the AI: Twilio's Advanced Opt-Out replies to them.
  for _, kv in ipairs({{'last_cust_seq', seq}, {'last_customer_message_at', a.now_iso}}) do
    changes[#changes + 1] = kv[1]
    changes[#changes + 1] = kv[2]
  end
else
  changes[#changes + 1] = 'last_customer_message_at'
  changes[#changes + 1] = a.now_iso
end
if a.kind == 'optout' then
  changes[#changes + 1] = 'opted_out'
  changes[#changes + 1] = '1'
elseif a.kind == 'optin' then
  changes[#changes + 1] = 'opted_out'
  changes[#changes + 1] = '0'
end
if redis.call('HGET', P .. 's:' .. sid, 'status') == 'dormant' then
  changes[#changes + 1] = 'status'
  changes[#changes + 1] = 'active'
end
if a.profile_name ~= '' then
  local raw = redis.call('HGET', P .. 's:' .. sid, 'input_fields')
  local fields = cjson.decode(raw or '{}')
  if fields.name == nil then
    fields.name = a.profile_name
    changes[#changes + 1] = 'input_fields'
    changes[#changes + 1] = cjson.encode(fields)
  end
end
sess_write(sid, changes, a.now_iso)

redis.call('HINCRBY', P .. 'counters', 'inbound_messages', 1)
local ref = sid .. ':' .. seq
for _, k in ipairs(a.dedupe) do redis.call('SET', k, ref, 'EX', a.dedupe_ttl) end

local dispatched, eligible = maybe_dispatch(sid, jobs_at(3)[1], now_ms)
local s = redis.call('HMGET', P .. 's:' .. sid, 'mode', 'help_requested', 'current_state', 'opted_out')
return {'status', 'ok', 'session_id', sid, 'seq', seq, 'created', created, 'eligible', eligible and 1 or 0,
  'dispatched', dispatched, 'mode', s[1], 'help_requested', s[2], 'state', s[3], 'opted_out', s[4],
  'agent_id', agent_id}
