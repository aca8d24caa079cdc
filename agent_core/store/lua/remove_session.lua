-- Erase one session and everything indexed about it (customer erase). ARGV[1] = session id.
return sess_remove(ARGV[1])
