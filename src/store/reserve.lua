-- Reserve: check and charge every counter of one operation, all or none (see redis.rs).
--
-- KEYS[1]    the op record (hash)
-- KEYS[2]    the revocations (hash: subject -> revoked at), only when there are guards
-- then one key per charge: its counter (a key may repeat)
-- ARGV[1]    now (caller's clock)
-- ARGV[2]    the record's expiry stamp (now + dedupe ttl)
-- ARGV[3]    the record's ttl in seconds
-- ARGV[4]    the attempt: who may refund this reservation
-- ARGV[5]    '1' when a live reserved record is this op's own earlier part, to be taken over
--            (a second step: the first step already settled that this op is new); else '0'
-- ARGV[6]    G, the number of guards; ARGV[7 .. 6+G] the guards
-- then five values per charge: kind, amount, limit, a, b
--   'l' lifetime   a, b unused
--   'f' fixed      a = window end, b = key ttl in seconds ('0': no expiry)
--   'a' anchored   a = end of a window opened now, b = its ttl in seconds ('0': no expiry)
--   's' schedule   a = start_at, b = interval
--
-- Replies: {'charged'} | {'adopted'} | {'dup'} | {'revoked', i} | {'exceeded', i, used, resets_at or ''}
--        | {'notyet', i, available_at} | {'bad', reason}; indexes are 0-based.

local now = dec(ARGV[1])
local stamp = dec(ARGV[2])
local guards = tonumber(ARGV[6])
if not now or not stamp or not guards or ARGV[4] == '' then
  return { 'bad', 'malformed arguments' }
end
local first = 2
if guards > 0 then
  first = 3
end

-- 1. Revoked guards.
for i = 1, guards do
  if redis.call('HEXISTS', KEYS[2], ARGV[6 + i]) == 1 then
    return { 'revoked', i - 1 }
  end
end

-- 2. A live record of this op (reserved or committed).
local state = redis.call('HMGET', KEYS[1], 's', 'x')
if state[1] then
  local x = dec(state[2])
  if not x then
    return { 'bad', 'malformed op record' }
  end
  if cmp(now, x) < 0 then
    if ARGV[5] == '1' then
      if state[1] == 'r' then
        redis.call('HSET', KEYS[1], 't', ARGV[4])
      end
      return { 'adopted' }
    end
    -- This send relies on the earlier reservation: nobody may refund it any more.
    if state[1] == 'r' then
      redis.call('HSET', KEYS[1], 't', '')
    end
    return { 'dup' }
  end
end

-- 3. Check every charge against the counter as this op has left it so far.
local base = 7 + guards
local n = (#ARGV - base + 1) / 5
if n ~= math.floor(n) or n ~= #KEYS - first + 1 then
  return { 'bad', 'malformed arguments' }
end

local seen = {} -- key -> { stored = value in window, proj = value after this op's charges, ... }
local order = {}
local charged = {}
for i = 1, n do
  local key = KEYS[first + i - 1]
  local o = base + (i - 1) * 5
  local kind, amount, limit = ARGV[o], dec(ARGV[o + 1]), dec(ARGV[o + 2])
  if not amount or not limit then
    return { 'bad', 'malformed arguments' }
  end
  local c = seen[key]
  if not c then
    c = { kind = kind }
    local v = redis.call('GET', key)
    if kind == 'a' then
      local e, u
      if v then
        e, u = anchored(v)
        if not e then
          return { 'bad', 'malformed counter' }
        end
      end
      if e and cmp(now, e) < 0 then
        c.stored, c.window_end, c.opens = u, str(e), false
      else
        c.stored, c.window_end, c.opens = ZERO, ARGV[o + 3], true
      end
      c.ttl = ARGV[o + 4]
    else
      c.stored = plain(v)
      if not c.stored then
        return { 'bad', 'malformed counter' }
      end
      if kind == 'f' then
        c.ttl = ARGV[o + 4]
      end
    end
    c.proj = c.stored
    seen[key] = c
    order[#order + 1] = key
  end

  local sum = add(c.proj, amount)
  if cmp(sum, limit) > 0 then
    local resets = ''
    if kind == 'f' then
      resets = ARGV[o + 3]
    elseif kind == 'a' and not c.opens then
      resets = c.window_end
    end
    return { 'exceeded', i - 1, str(c.stored), resets }
  end
  if kind == 's' then
    local start, interval = dec(ARGV[o + 3]), dec(ARGV[o + 4])
    if not start or not interval then
      return { 'bad', 'malformed arguments' }
    end
    local due = add(start, mul(c.proj, interval))
    if cmp(now, due) < 0 then
      if cmp(due, U64_MAX) > 0 then
        due = U64_MAX
      end
      return { 'notyet', i - 1, str(due) }
    end
  end
  c.proj = sum
  charged[i] = { key, str(amount), kind == 'a' and c.window_end or '', (kind == 'a' and c.opens) and '1' or '' }
end

-- 4. Charge every counter and remember what was charged.
for _, key in ipairs(order) do
  local c = seen[key]
  if c.kind == 'a' then
    local v = c.window_end .. ':' .. str(c.proj)
    if not c.opens then
      redis.call('SET', key, v, 'KEEPTTL')
    elseif c.ttl ~= '0' then
      redis.call('SET', key, v, 'EX', c.ttl)
    else
      redis.call('SET', key, v)
    end
  elseif c.kind == 'f' and c.ttl ~= '0' then
    redis.call('SET', key, str(c.proj), 'EX', c.ttl)
  else
    redis.call('SET', key, str(c.proj))
  end
end

redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 's', 'r', 'x', ARGV[2], 'n', n, 't', ARGV[4])
for i = 1, n do
  local ch = charged[i]
  redis.call('HSET', KEYS[1], 'k' .. i, ch[1], 'a' .. i, ch[2], 'e' .. i, ch[3], 'o' .. i, ch[4])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return { 'charged' }
