-- Commit: keep a reservation (see redis.rs). The record stays until its ttl, so the op hash is
-- still recognised; an unknown op is left alone.
--
-- KEYS[1]  the op record (hash)

if redis.call('HGET', KEYS[1], 's') == 'r' then
  redis.call('HSET', KEYS[1], 's', 'c')
end
return 1
