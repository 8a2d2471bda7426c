-- Refund: give back a reservation that was not committed (see redis.rs).
--
-- KEYS[1]    the op record (hash)
-- KEYS[1+i]  the counter charged by the record's i-th charge, as the caller read it from the record
-- ARGV[1]    the attempt asking: only the attempt that reserved may refund, and only while no other
--            send relied on the reservation
--
-- Replies: {'refunded'} | {'none'} (unknown, committed, or not this attempt's to refund) |
-- {'changed'} (the record is not the one the caller read: read it again) | {'bad', reason}.

local owner = redis.call('HMGET', KEYS[1], 's', 't')
if owner[1] ~= 'r' or not owner[2] or owner[2] == '' or owner[2] ~= ARGV[1] then
  return { 'none' }
end
local n = tonumber(redis.call('HGET', KEYS[1], 'n'))
if not n or n ~= #KEYS - 1 then
  return { 'changed' }
end

local charges = {}
for i = 1, n do
  local f = redis.call('HMGET', KEYS[1], 'k' .. i, 'a' .. i, 'e' .. i, 'o' .. i)
  if f[1] ~= KEYS[1 + i] then
    return { 'changed' }
  end
  local amount = dec(f[2])
  if not amount or not f[3] then
    return { 'bad', 'malformed op record' }
  end
  charges[i] = { amount, f[3], f[4] == '1' }
end

for i = 1, n do
  local key, amount, window_end = KEYS[1 + i], charges[i][1], charges[i][2]
  local v = redis.call('GET', key)
  if v then
    if window_end ~= '' then
      -- An anchored window: only the window this op was charged into.
      local e, u = anchored(v)
      if e and str(e) == window_end then
        local left = sub(u, amount)
        if charges[i][3] and cmp(left, ZERO) == 0 then
          -- This op opened the window and nothing else is in it: as if it never opened.
          redis.call('DEL', key)
        else
          redis.call('SET', key, window_end .. ':' .. str(left), 'KEEPTTL')
        end
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
