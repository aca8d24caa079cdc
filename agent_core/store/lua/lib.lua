-- Shared by every script (prepended by agent_core/store/scripts.py).
-- Every session write goes through sess_write so indexes, counters and the
-- one-open-session map can never drift from the session hashes.
-- Keys are computed here, so the store needs a single-primary (non-cluster) Redis.
local P = 'gw:'
local TURNS = P .. 'turns:pending'
local IXF = {'agent_id', 'status', 'mode', 'help_requested', 'channel', 'customer_id', 'activity_ms'}

local function ix_keys(s)
  local out = {}
  for _, scope in ipairs({'*', s.agent_id}) do
    local b = P .. 'ix:' .. scope .. ':'
    out[#out + 1] = b .. 'all'
    out[#out + 1] = b .. 'status:' .. s.status
    out[#out + 1] = b .. 'mode:' .. s.mode
    out[#out + 1] = b .. 'help:' .. s.help_requested
    out[#out + 1] = b .. 'channel:' .. s.channel
    out[#out + 1] = b .. 'cust:' .. s.customer_id
  end
  return out
end

local function count_into(deltas, s, sign)
  for _, scope in ipairs({'*', s.agent_id}) do
    local d = deltas[scope]
    if not d then
      d = {}
      deltas[scope] = d
    end
    d.total = (d.total or 0) + sign
    d[s.status] = (d[s.status] or 0) + sign
    if s.help_requested == '1' then d.help_requested = (d.help_requested or 0) + sign end
    if s.mode == 'support' then d.support = (d.support or 0) + sign end
  end
end

local function apply_counts(deltas)
  for scope, d in pairs(deltas) do
    for field, n in pairs(d) do
      if n ~= 0 then redis.call('HINCRBY', P .. 'stats:' .. scope, field, n) end
    end
  end
end

local function load_ix(sid)
  local v = redis.call('HMGET', P .. 's:' .. sid, unpack(IXF))
  if not v[1] then return nil end
  local s = {}
  for i, f in ipairs(IXF) do s[f] = v[i] end
  return s
end

-- Webhook events (SPEC §11) go to an outbox list a worker turns into delivery jobs; only
-- for agents whose webhook subscribes to the type (agentrt.events, comma-separated).
local function emit(agent_id, etype, sid, data_json, now_iso)
  local hooks = redis.call('HGET', P .. 'agentrt:' .. agent_id, 'events')
  if not hooks or hooks == '' then return end
  if not string.find(',' .. hooks .. ',', ',' .. etype .. ',', 1, true) then return end
  local n = redis.call('INCR', P .. 'eventseq')
  redis.call('RPUSH', P .. 'outbox', '{"event_id":"evt_' .. n .. '_' .. string.gsub(now_iso, '[^0-9]', '') ..
    '","type":"' .. etype .. '","created_at":"' .. now_iso .. '","agent_id":"' .. agent_id ..
    '","session_id":"' .. sid .. '","data":' .. data_json .. '}')
end

-- Live notices for SSE streams and waiting requests (pub/sub: lossy by design; clients
-- catch up from the store).
local function notice(body)
  redis.call('PUBLISH', P .. 'notify:live', body)
end

local IXSET = {}
for _, f in ipairs(IXF) do IXSET[f] = true end

-- changes: flat {field, value, ...}. Creating a session passes all its fields.
local function sess_write(sid, changes, now_iso)
  local key = P .. 's:' .. sid
  local old = load_ix(sid)
  local new = {}
  if old then for k, v in pairs(old) do new[k] = v end end
  local touched = false
  for i = 1, #changes, 2 do
    local f = changes[i]
    if IXSET[f] and new[f] ~= tostring(changes[i + 1]) then
      new[f] = tostring(changes[i + 1])
      touched = true
    end
  end
  changes[#changes + 1] = 'updated_at'
  changes[#changes + 1] = now_iso
  redis.call('HSET', key, unpack(changes))
  redis.call('HINCRBY', key, 'version', 1)
  if not touched then return old, new end

  local newkeys = ix_keys(new)
  if old then
    local keep = {}
    for _, k in ipairs(newkeys) do keep[k] = true end
    for _, k in ipairs(ix_keys(old)) do
      if not keep[k] then redis.call('ZREM', k, sid) end
    end
  end
  for _, k in ipairs(newkeys) do redis.call('ZADD', k, new.activity_ms, sid) end

  local deltas = {}
  if old then count_into(deltas, old, -1) end
  count_into(deltas, new, 1)
  apply_counts(deltas)

  local sid_json = '"session_id":"' .. sid .. '"'
  if not old then
    emit(new.agent_id, 'session.created', sid,
      '{' .. sid_json .. ',"customer_id":' .. cjson.encode(new.customer_id) .. ',"channel":"' .. new.channel .. '"}',
      now_iso)
  else
    if old.status ~= new.status then
      emit(new.agent_id, 'session.status_changed', sid,
        '{' .. sid_json .. ',"from":"' .. old.status .. '","to":"' .. new.status .. '"}', now_iso)
    end
    if old.mode ~= new.mode then
      emit(new.agent_id, 'session.mode_changed', sid,
        '{' .. sid_json .. ',"from":"' .. old.mode .. '","to":"' .. new.mode .. '"}', now_iso)
    end
    if old.help_requested ~= new.help_requested and new.help_requested == '1' then
      emit(new.agent_id, 'session.help_requested', sid, '{' .. sid_json .. '}', now_iso)
    end
  end
  if not old or old.status ~= new.status or old.mode ~= new.mode or old.help_requested ~= new.help_requested then
    notice('{"type":"session",' .. sid_json .. ',"agent_id":"' .. new.agent_id .. '","status":"' .. new.status ..
      '","mode":"' .. new.mode .. '","help_requested":' .. (new.help_requested == '1' and 'true' or 'false') .. '}')
  end

  local open = P .. 'open:' .. new.agent_id
  if new.status ~= 'closed' then
    if not old or old.status == 'closed' then redis.call('HSET', open, new.customer_id, sid) end
  elseif old and old.status ~= 'closed' then
    if redis.call('HGET', open, old.customer_id) == sid then redis.call('HDEL', open, old.customer_id) end
  end
  return old, new
end

-- The fields of a brand-new session; the caller's part comes from
-- agent_core/store/sessions.py:new_session.
-- n = {id, customer_id, channel, customer_address, agent_address, messaging_service_sid,
--      input_fields (JSON text), context (JSON text)}
local function new_session(n, agent_id, num, state, now_ms, now_iso)
  return {
    'id', n.id, 'account_id', '1', 'customer_id', n.customer_id, 'mode', 'ai', 'help_requested', '0',
    'status', 'active', 'input_fields', n.input_fields, 'state_fields', '{}', 'context', n.context,
    'active_human', '', 'channel', n.channel, 'customer_address', n.customer_address or '',
    'agent_address', n.agent_address or '', 'messaging_service_sid', n.messaging_service_sid or '',
    'opted_out', '0', 'seq', '0', 'last_cust_seq', '0', 'answered_seq', '0', 'version', '0',
    'agent_id', agent_id, 'chat_agent_id', num, 'current_state', state, 'activity_ms', now_ms,
    'created_at', now_iso, 'last_activity_at', now_iso,
  }
end

-- Removes a session and everything indexed about it (customer erase).
local function sess_remove(sid)
  local old = load_ix(sid)
  if not old then return 0 end
  for _, k in ipairs(ix_keys(old)) do redis.call('ZREM', k, sid) end
  local deltas = {}
  count_into(deltas, old, -1)
  apply_counts(deltas)
  local open = P .. 'open:' .. old.agent_id
  if redis.call('HGET', open, old.customer_id) == sid then redis.call('HDEL', open, old.customer_id) end
  redis.call('ZREM', TURNS, sid)
  redis.call('DEL', P .. 's:' .. sid, P .. 'm:' .. sid, P .. 'w:' .. sid, P .. 'turn:lock:' .. sid)
  return 1
end

-- rest is a JSON object's text without its opening brace; seq and session_id go first
-- (session ids are UUIDs, safe to splice into JSON).
local function msg_append(sid, agent_id, rest, now_iso)
  local seq = redis.call('HINCRBY', P .. 's:' .. sid, 'seq', 1)
  local json = '{"seq":' .. seq .. ',"session_id":"' .. sid .. '",' .. rest
  redis.call('HSET', P .. 'm:' .. sid, seq, json)
  local role = string.match(rest, '"role":"(%a+)"') or ''
  local private = string.find(rest, '"private":true', 1, true) ~= nil
  if not private and (role == 'customer' or role == 'agent' or role == 'operator') then
    emit(agent_id, 'message.created', sid, json, now_iso)
  end
  notice('{"type":"message","session_id":"' .. sid .. '","agent_id":"' .. agent_id .. '","seq":' .. seq ..
    ',"role":"' .. role .. '","private":' .. (private and 'true' or 'false') .. '}')
  return seq
end

-- Follow-up work queued with a write (agent_core/store/work.py). ARGV[i] is a JSON list of
-- job specs — the writes a JobFormat prepared, with the work's safety entry and grace —
-- and ARGV[i+1..] their payloads. These scripts know nothing of the job format: they run
-- the writes. A spec without an entry is work on the session the script resolved; an
-- inline one (done by the writer right after) gets its safety entry and no job.
local function jobs_at(i)
  local out = {}
  if not ARGV[i] then return out end
  for n, job in ipairs(cjson.decode(ARGV[i])) do
    job.payload = ARGV[i + n]
    out[#out + 1] = job
  end
  return out
end

local function push_job(job, sid)
  local payload = job.payload
  if job.splice ~= '' then
    -- Replaced in place: the placeholder has the length of a session id.
    local at = string.find(payload, job.splice, 1, true)
    if not at or #sid ~= #job.splice then error('job payload has no placeholder for session ' .. sid) end
    payload = string.sub(payload, 1, at - 1) .. sid .. string.sub(payload, at + #job.splice)
  end
  redis.call('HSET', job.key, unpack(job.fields))
  redis.call('HSET', job.key, job.payload_field, payload)
  redis.call('RPUSH', job.queue, job.id)
  redis.call('SADD', job.registry, job.queue)
end

-- Would the AI answer this session now, and is a customer message waiting for it?
-- The one statement of SPEC §4.2's rule; Python reads it through turn_view.lua.
local function turn_state(sid)
  local v = redis.call('HMGET', P .. 's:' .. sid,
    'status', 'mode', 'opted_out', 'help_requested', 'last_cust_seq', 'answered_seq', 'agent_id')
  if not v[1] then return false, false end
  local unanswered = tonumber(v[5] or '0') > tonumber(v[6] or '0')
  if v[1] == 'closed' or v[2] ~= 'ai' or v[3] == '1' then return false, unanswered end
  if v[4] == '1' and redis.call('HGET', P .. 'agentrt:' .. v[7], 'hold') == '1' then return false, unanswered end
  return true, unanswered
end

-- Makes sure exactly one turn job is queued or running for the session (the turns:pending
-- slot, whose score is the lease: the watchdog queues the turn again once it passes).
local function dispatch(sid, job, now_ms)
  if redis.call('ZSCORE', TURNS, sid) then return 2 end
  redis.call('ZADD', TURNS, now_ms + job.grace_ms, sid)
  push_job(job, sid)
  return 1
end

local function maybe_dispatch(sid, job, now_ms)
  local eligible, unanswered = turn_state(sid)
  if eligible and unanswered and job then return dispatch(sid, job, now_ms), eligible end
  return 0, eligible
end

-- Queues each job for session sid: a turn through the session's one-turn slot, other work
-- with its safety entry (due after its grace; the task sweep re-queues what never finished).
-- Returns what the turn dispatch did (0 none, 1 queued, 2 one was already pending).
local function queue_work(sid, jobs, now_ms)
  local dispatched = 0
  for _, job in ipairs(jobs) do
    if job.task == 'turn' then
      dispatched = maybe_dispatch(sid, job, now_ms)
    else
      local entry = job.entry ~= '' and job.entry or (job.task .. ':' .. sid)
      redis.call('ZADD', P .. 'tasks', now_ms + job.grace_ms, entry)
      if not job.inline then push_job(job, sid) end
    end
  end
  return dispatched
end

-- RPUSH ARGV[first..last] onto key, in slices (unpack has a stack limit).
local function push_range(key, first, last)
  for i = first, last, 1000 do
    redis.call('RPUSH', key, unpack(ARGV, i, math.min(i + 999, last)))
  end
end
