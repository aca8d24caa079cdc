-- Compare-and-set write to one session: field changes, appended messages, a whisper and
-- the follow-up work, atomically, only if the session is still at expect_version.
-- ARGV[1] = JSON params (see agent_core/store/sessions.py:commit), ARGV[2..] = the work's
-- jobs (lib.lua jobs_at).
local a = cjson.decode(ARGV[1])
local key = P .. 's:' .. a.sid
local cur = redis.call('HMGET', key, 'version', 'status')
if not cur[1] then return {'missing'} end
if a.expect_version >= 0 and tonumber(cur[1]) ~= a.expect_version then return {'conflict', cur[1]} end
if a.require_open and cur[2] == 'closed' then return {'closed'} end

local agent_id = redis.call('HGET', key, 'agent_id')
local seqs = {}
for _, rest in ipairs(a.messages) do seqs[#seqs + 1] = msg_append(a.sid, agent_id, rest, a.now_iso) end

local changes = a.set
if a.touch then
  changes[#changes + 1] = 'last_activity_at'
  changes[#changes + 1] = a.now_iso
  changes[#changes + 1] = 'activity_ms'
  changes[#changes + 1] = a.now_ms
end
if a.answer then
  changes[#changes + 1] = 'answered_seq'
  changes[#changes + 1] = redis.call('HGET', key, 'last_cust_seq') or '0'
end
sess_write(a.sid, changes, a.now_iso)

if a.whisper ~= '' then
  local whispers = P .. 'w:' .. a.sid
  redis.call('RPUSH', whispers, a.whisper)
  redis.call('LTRIM', whispers, -tonumber(a.whispers_keep), -1)
end
local dispatched = queue_work(a.sid, jobs_at(2), tonumber(a.now_ms))
local out = {'ok', redis.call('HGET', key, 'version'), dispatched}
for _, s in ipairs(seqs) do out[#out + 1] = s end
return out
