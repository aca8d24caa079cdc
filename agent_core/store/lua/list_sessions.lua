-- One page of sessions from the most selective index, newest activity first.
-- ARGV[1] = JSON {index, filters{field=value}, q, cursor_score, cursor_sid, limit, max_scan}
-- Returns {next_score, next_sid, n, session1_flat, ...}; next_score '' on the last page.
local a = cjson.decode(ARGV[1])
local max = a.cursor_score
if max == '' then max = '+inf' end
local fields, wants = {}, {}
for f, v in pairs(a.filters) do
  fields[#fields + 1] = f
  wants[#wants + 1] = v
end
if a.q ~= '' then fields[#fields + 1] = 'customer_id' end

local out = {}
local scanned, last_score, last_sid = 0, '', ''
local offset, batch = 0, 200
local done = false
while not done do
  local rows = redis.call('ZREVRANGEBYSCORE', a.index, max, '-inf', 'WITHSCORES', 'LIMIT', offset, batch)
  if #rows == 0 then
    last_score = ''
    break
  end
  offset = offset + #rows / 2
  for i = 1, #rows, 2 do
    local sid, score = rows[i], rows[i + 1]
    local skip = a.cursor_sid ~= '' and score == a.cursor_score and sid >= a.cursor_sid
    if not skip then
      scanned = scanned + 1
      local ok = true
      if #fields > 0 then
        local v = redis.call('HMGET', P .. 's:' .. sid, unpack(fields))
        for j, want in ipairs(wants) do
          if v[j] ~= want then
            ok = false
            break
          end
        end
        if ok and a.q ~= '' then
          local cust = string.lower(v[#fields] or '')
          ok = string.find(cust, a.q, 1, true) ~= nil or sid == a.q
        end
      end
      last_score, last_sid = score, sid
      if ok then
        out[#out + 1] = redis.call('HGETALL', P .. 's:' .. sid)
        if #out >= a.limit then
          done = true
          break
        end
      end
      if scanned >= a.max_scan then
        done = true
        break
      end
    end
  end
  if #rows < batch * 2 and not done then
    last_score = ''
    break
  end
end
if last_score ~= '' and #out >= a.limit then
  -- Only report a next page if a row exists past the last one returned.
  local has_more = redis.call('ZCOUNT', a.index, '-inf', '(' .. last_score) > 0
  if not has_more then
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', a.index, last_score, last_score)) do
      if m < last_sid then
        has_more = true
        break
      end
    end
  end
  if not has_more then last_score = '' end
end
local res = {last_score, last_sid, #out}
for _, s in ipairs(out) do res[#res + 1] = s end
return res
