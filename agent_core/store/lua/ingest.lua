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
local key = P .. 's:' .. sid
local ch = a.new_session.channel
-- The session follows the customer to the channel of this message (its `channel` is the one
-- in use, so replies and operators reach them there); opt-outs and the last message time
-- are kept per channel (a STOP on SMS does not silence WhatsApp, and the reverse).
local cur = redis.call('HMGET', key, 'channel', 'opted_out', 'opted_out:' .. ch)
local opted = cur[3]
if not opted then
  -- A session from before per-channel state: its opt-out was the one of its only channel.
  if cur[1] == ch then opted = cur[2] or '0' else opted = '0' end
end
if a.kind == 'optout' then
  opted = '1'
elseif a.kind == 'optin' then
  opted = '0'
end
local changes = {'last_activity_at', a.now_iso, 'activity_ms', now_ms, 'channel', ch, 'opted_out', opted,
  'opted_out:' .. ch, opted, 'last_customer_at:' .. ch, a.now_iso, 'last_customer_message_at', a.now_iso}
if a.new_session.customer_address ~= '' then
  for _, f in ipairs({'customer_address', 'agent_address', 'messaging_service_sid'}) do
    changes[#changes + 1] = f
    changes[#changes + 1] = a.new_session[f]
  end
end
-- While opted out, messages are kept for operators but the AI does not answer them.
-- Carrier keywords (STOP, START, HELP) are stored for the record but never answered by the
-- AI: Twilio's Advanced Opt-Out replies to them.
if a.kind == 'message' and opted ~= '1' then
  changes[#changes + 1] = 'last_cust_seq'
  changes[#changes + 1] = seq
end
if redis.call('HGET', key, 'status') == 'dormant' then
  changes[#changes + 1] = 'status'
  changes[#changes + 1] = 'active'
end
if a.profile_name ~= '' then
  local raw = redis.call('HGET', key, 'input_fields')
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
