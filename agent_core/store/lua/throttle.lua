-- Per-sender send rate (GCRA): reserve the next `n` send slots of a sender number, so bursts
-- queue with us, not as Twilio 429s. Returns {kind, wait_ms}: kind 1 = send after wait_ms
-- (at most max_wait_ms: the caller waits); kind 2 = the slots are held for wait_ms from now
-- (the caller comes back exactly then and sends without asking again), so a backlog costs one
-- reservation per message and drains at the rate, not a herd re-asking for the next slot.
-- The same GCRA limits requests (agent_core/store/limits.py): with ARGV[6] = 'limit' a hit whose
-- wait would pass max_wait_ms (the burst) is refused and reserves nothing: {0, ms until one fits}.
-- ARGV = key (keys.send_rate / keys.rate_limit), interval_ms (1000 / messages per second), n,
--        now_ms, max_wait_ms, mode ('reserve' or 'limit')
local key = ARGV[1]
local interval, n, now, max_wait = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local tat = tonumber(redis.call('GET', key) or '0')
if tat < now then tat = now end
local wait = tat - now
if ARGV[6] == 'limit' and wait > max_wait then return {0, math.ceil(wait - max_wait)} end
local new_tat = tat + interval * n
redis.call('SET', key, new_tat, 'PX', math.max(1, math.ceil(new_tat - now + 1000)))
if wait > max_wait then return {2, math.ceil(wait)} end
return {1, math.ceil(wait)}
