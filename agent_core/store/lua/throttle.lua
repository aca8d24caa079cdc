-- Per-sender send rate (GCRA): reserve `n` send slots for a sender number if the wait is at
-- most max_wait_ms, so bursts queue with us, not as Twilio 429s. Returns {reserved, wait_ms}:
-- reserved = 1 means send after wait_ms; 0 means nothing was reserved, come back in wait_ms.
-- ARGV = sender, interval_ms (1000 / messages per second), n, now_ms, max_wait_ms
local key = P .. 'mps:' .. ARGV[1]
local interval, n, now, max_wait = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local tat = tonumber(redis.call('GET', key) or '0')
if tat < now then tat = now end
local wait = tat - now
if wait > max_wait then return {0, math.ceil(wait)} end
local new_tat = tat + interval * n
redis.call('SET', key, new_tat, 'PX', math.max(1, math.ceil(new_tat - now + 1000)))
return {1, math.ceil(wait)}
