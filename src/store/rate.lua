-- GCRA request limits, all or none: KEYS are the limits' keys; ARGV[1] is now (microseconds),
-- then per key its emission interval and its burst tolerance (microseconds).
-- Returns 0 when admitted (every key charged), else the microseconds until the request would be.
local now = tonumber(ARGV[1])
local next_tat = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - tolerance
  if now < allow_at and allow_at - now > wait then wait = allow_at - now end
  next_tat[i] = new_tat
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%d', next_tat[i]), 'PX', math.floor((next_tat[i] - now) / 1000) + 1)
end
return 0
