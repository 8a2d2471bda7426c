-- Exact arithmetic on unsigned decimal strings, shared by the store's scripts (prepended to each).
-- Lua numbers in Redis are doubles, exact only below 2^53; amounts are up to 2^256 - 1, so a
-- number is an array of base-10^7 limbs, least significant first. Every product of two limbs
-- plus carries stays below 2^53.

local LIMB = 10000000

-- Parses a string of decimal digits; nil when it is not one.
local function dec(s)
  if type(s) ~= 'string' or not string.match(s, '^%d+$') then
    return nil
  end
  local t = {}
  local i = #s
  while i >= 1 do
    local j = i - 6
    if j < 1 then
      j = 1
    end
    t[#t + 1] = tonumber(string.sub(s, j, i))
    i = j - 1
  end
  while #t > 1 and t[#t] == 0 do
    t[#t] = nil
  end
  return t
end

local function str(t)
  local parts = { string.format('%d', t[#t]) }
  for i = #t - 1, 1, -1 do
    parts[#parts + 1] = string.format('%07d', t[i])
  end
  return table.concat(parts)
end

-- -1, 0 or 1 as a <, = or > b.
local function cmp(a, b)
  if #a ~= #b then
    return #a < #b and -1 or 1
  end
  for i = #a, 1, -1 do
    if a[i] ~= b[i] then
      return a[i] < b[i] and -1 or 1
    end
  end
  return 0
end

local function add(a, b)
  local r, carry = {}, 0
  local n = math.max(#a, #b)
  for i = 1, n do
    local s = (a[i] or 0) + (b[i] or 0) + carry
    if s >= LIMB then
      r[i], carry = s - LIMB, 1
    else
      r[i], carry = s, 0
    end
  end
  if carry > 0 then
    r[n + 1] = carry
  end
  return r
end

-- a - b, or 0 when b > a.
local function sub(a, b)
  if cmp(a, b) <= 0 then
    return { 0 }
  end
  local r, borrow = {}, 0
  for i = 1, #a do
    local s = a[i] - (b[i] or 0) - borrow
    if s < 0 then
      r[i], borrow = s + LIMB, 1
    else
      r[i], borrow = s, 0
    end
  end
  while #r > 1 and r[#r] == 0 do
    r[#r] = nil
  end
  return r
end

local function mul(a, b)
  local r = {}
  for i = 1, #a + #b do
    r[i] = 0
  end
  for i = 1, #a do
    local carry = 0
    for j = 1, #b do
      local cur = r[i + j - 1] + a[i] * b[j] + carry
      local low = cur % LIMB
      r[i + j - 1] = low
      carry = (cur - low) / LIMB
    end
    local k = i + #b
    while carry > 0 do
      local cur = r[k] + carry
      local low = cur % LIMB
      r[k] = low
      carry = (cur - low) / LIMB
      k = k + 1
    end
  end
  while #r > 1 and r[#r] == 0 do
    r[#r] = nil
  end
  return r
end

local ZERO = { 0 }
local U64_MAX = dec('18446744073709551615')

-- A stored counter value; nil (with the reason) when it is malformed.
local function plain(v)
  if not v then
    return ZERO
  end
  return dec(v)
end

-- A stored anchored window, '<end>:<used>'.
local function anchored(v)
  local e, u = string.match(v, '^(%d+):(%d+)$')
  if not e then
    return nil
  end
  return dec(e), dec(u)
end
