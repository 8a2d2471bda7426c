-- Refund: give back a reservation that was not committed (see redis.rs).
--
-- KEYS[1]    the op record (hash)
-- KEYS[1+i]  the counter charged by the record's i-th charge, as the caller read it from the record
--
-- Replies: {'refunded'} | {'none'} (unknown or committed) | {'changed'} (the record is not the one
-- the caller read: read it again) | {'bad', reason}.

if redis.call('HGET', KEYS[1], 's') ~= 'r' then
  return { 'none' }
end
local n = tonumber(redis.call('HGET', KEYS[1], 'n'))
if not n or n ~= #KEYS - 1 then
  return { 'changed' }
end

local charges = {}
for i = 1, n do
  local f = redis.call('HMGET', KEYS[1], 'k' .. i, 'a' .. i, 'e' .. i)
  if f[1] ~= KEYS[1 + i] then
    return { 'changed' }
  end
  local amount = dec(f[2])
  if not amount or not f[3] then
    return { 'bad', 'malformed op record' }
  end
  charges[i] = { amount, f[3] }
end

for i = 1, n do
  local key, amount, window_end = KEYS[1 + i], charges[i][1], charges[i][2]
  local v = redis.call('GET', key)
  if v then
    if window_end ~= '' then
      -- An anchored window: only the window this op was charged into.
      local e, u = anchored(v)
      if e and str(e) == window_end then
        redis.call('SET', key, window_end .. ':' .. str(sub(u, amount)), 'KEEPTTL')
      end
    else
      local u = plain(v)
      if u then
        redis.call('SET', key, str(sub(u, amount)), 'KEEPTTL')
      end
    end
  end
end
redis.call('DEL', KEYS[1])
return { 'refunded' }
