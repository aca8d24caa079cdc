-- Compare-and-set write to one session: field changes, appended messages, side records
-- and (optionally) a turn, atomically, only if the session is still at expect_version.
-- ARGV[1] = JSON params (see agent_core/store/sessions.py:commit), ARGV[2] = turn job payload,
-- ARGV[3..] = payloads of the prepared jobs in params.jobs.
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

for _, t in ipairs(a.zadd) do redis.call('ZADD', t[1], t[2], t[3]) end
for _, t in ipairs(a.zrem) do redis.call('ZREM', t[1], t[2]) end
for _, t in ipairs(a.rpush) do
  redis.call('RPUSH', t[1], t[2])
  if t[3] then redis.call('LTRIM', t[1], -tonumber(t[3]), -1) end
end
local datas = {}
for i = 3, #ARGV do datas[#datas + 1] = ARGV[i] end
push_jobs(a.jobs, datas)
for _, t in ipairs(a.setex) do redis.call('SET', t[1], t[2], 'EX', t[3]) end

local dispatched = 0
if a.job ~= cjson.null and a.job ~= nil then
  dispatched = maybe_dispatch(a.sid, a.job, ARGV[2], tonumber(a.now_ms))
end
local out = {'ok', redis.call('HGET', key, 'version'), dispatched}
for _, s in ipairs(seqs) do out[#out + 1] = s end
return out
