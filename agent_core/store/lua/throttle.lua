-- Per-sender send rate (GCRA): reserve `n` send slots for a sender number and return how
-- many ms the caller must wait before sending, so bursts queue with us, not as Twilio 429s.
-- ARGV = sender, interval_ms (1000 / messages per second), n, now_ms
local key = P .. 'mps:' .. ARGV[1]
local interval, n, now = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', key) or '0')
if tat < now then tat = now end
local wait = tat - now
local new_tat = tat + interval * n
redis.call('SET', key, new_tat, 'PX', math.max(1, math.ceil(new_tat - now + 1000)))
return wait
