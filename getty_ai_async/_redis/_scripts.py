"""The Lua scripts of `RedisLimiter`: each runs atomically in Redis, on Redis's clock.

Keys of one account (``{prefix}:{<hash of the API key>}:...``, one hash tag so that a
cluster keeps them on one shard):

- ``leases``  sorted set: lease tokens not bound yet (a POST under way) -> expiry (ms)
- ``pending`` sorted set: generation ids bound to a lease -> expiry (ms); keyed by the
  id, so a worker that adopts a generation (resumed from a journal) takes over the
  lease of the worker that died holding it instead of counting it twice
- ``queue``   sorted set: waiting waiters -> arrival ticket (first come, first served
  across workers)
- ``waiters`` sorted set: waiting waiters -> heartbeat expiry (ms): a dead worker's
  waiters leave the queue by themselves (a lease granted to a waiter also starts with
  that short expiry, extended once its worker shows it is alive)
- ``state``   hash: mode, the auto limit's state (`getty_ai_async._auto`, mirrored
  below), counters (refused, expired), the ticket counter
- ``workers`` sorted set: live workers -> expiry (ms): a worker's every call extends it
  by its lease TTL; one that says it leaves, or goes quiet that long, is dropped
- ``caps``    hash: live workers -> the `max_pending` each was given (a number or
  ``auto``). The account's cap is the lowest number among them (`live_caps`), so
  workers given different caps never exceed any of them; with no number, the ``auto``
  rules apply
- ``qps``     hash: the shared request budget (GCRA: theoretical arrival time, rate)

Every script first drops what expired, then does its work, then hands free slots to
the head of the queue (`grant`), publishing ``<epoch> <token>...`` on each granted
worker's channel ``...:grant:<worker>`` and naming them in its reply; a generation that
ends publishes on ``...:room``. Times come from ``TIME`` in Redis, never from a worker's clock.
"""

from __future__ import annotations

__all__ = ["QPS", "SCRIPTS"]

_PRELUDE = """
local LEASES, PENDING, QUEUE, WAITERS, STATE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local WORKERS, CAPS = KEYS[6], KEYS[7]
-- ARGV[1]: the worker's settings in one space-separated string (one argument to encode
-- instead of eleven: each costs the client CPU on every call).
local SETTINGS = {}
for field in string.gmatch(ARGV[1], '[^ ]+') do SETTINGS[#SETTINGS + 1] = field end
local MINE = tonumber(SETTINGS[1])
local LEASE_TTL = tonumber(SETTINGS[2])
local CLAIM_TTL = tonumber(SETTINGS[3])
local SEED_LIMIT = tonumber(SETTINGS[4])
local SEED_CEILING = tonumber(SETTINGS[5])
local MAX = tonumber(SETTINGS[6])
local PROBE_MIN = tonumber(SETTINGS[7])
local PROBE_MAX = tonumber(SETTINGS[8])
local CHANNEL = SETTINGS[9]
local WAITER_TTL = tonumber(SETTINGS[10])
local WORKER = SETTINGS[11] or ''
local clock = redis.call('TIME')
local NOW = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local FRESH = 0
-- The account's fixed cap (0: auto) and the worker that gave it (`live_caps`).
local FIXED, FIXED_BY, LIVE = 0, '', 0

local function num(field, default)
  local value = redis.call('HGET', STATE, field)
  if value then return tonumber(value) end
  return default
end

-- Sets FIXED: the lowest max_pending among live workers; 0 (auto) if all have "auto".
-- With no worker live (the last one just left), the mode recorded last stands.
local function live_caps()
  for _, worker in ipairs(redis.call('ZRANGEBYSCORE', WORKERS, '-inf', NOW)) do
    redis.call('ZREM', WORKERS, worker)
    redis.call('HDEL', CAPS, worker)
  end
  local caps = redis.call('HGETALL', CAPS)
  LIVE = #caps / 2
  if LIVE == 0 then
    FIXED = tonumber(redis.call('HGET', STATE, 'mode') or '') or 0
    return
  end
  FIXED, FIXED_BY = 0, ''
  for index = 1, #caps, 2 do
    local worker, cap = caps[index], tonumber(caps[index + 1])
    if cap and (FIXED == 0 or cap < FIXED or (cap == FIXED and worker < FIXED_BY)) then
      FIXED, FIXED_BY = cap, worker
    end
  end
end

-- The calling worker says it is alive, with its max_pending (unless WORKER is '': it
-- is closing).
local function setup()
  if WORKER ~= '' then
    local mine = 'auto'
    if MINE > 0 then mine = tostring(MINE) end
    redis.call('ZADD', WORKERS, NOW + LEASE_TTL, WORKER)
    redis.call('HSET', CAPS, WORKER, mine)
  end
  live_caps()
  local mode = 'auto'
  if FIXED > 0 then mode = tostring(FIXED) end
  if redis.call('HSETNX', STATE, 'mode', mode) == 1 then
    FRESH = 1
    if FIXED == 0 then
      redis.call('HSET', STATE, 'limit', SEED_LIMIT)
      if SEED_CEILING > 0 then redis.call('HSET', STATE, 'ceiling', SEED_CEILING) end
    end
  else
    redis.call('HSET', STATE, 'mode', mode)
  end
end

local function limit()
  if FIXED > 0 then return FIXED end
  return num('limit', SEED_LIMIT)
end

local function set_limit(value)
  value = math.floor(value)
  if value < 1 then value = 1 end
  if value > MAX then value = MAX end
  redis.call('HSET', STATE, 'limit', value)
end

local function used()
  return redis.call('ZCARD', LEASES) + redis.call('ZCARD', PENDING)
end

local function purge()
  local gone = redis.call('ZREMRANGEBYSCORE', LEASES, '-inf', NOW)
    + redis.call('ZREMRANGEBYSCORE', PENDING, '-inf', NOW)
  if gone > 0 then redis.call('HINCRBY', STATE, 'expired', gone) end
  local dead = redis.call('ZRANGEBYSCORE', WAITERS, '-inf', NOW, 'LIMIT', 0, 100)
  for _, waiter in ipairs(dead) do
    redis.call('ZREM', WAITERS, waiter)
    redis.call('ZREM', QUEUE, waiter)
  end
end

local function worker_of(token)
  return string.match(token, '^(.*):[^:]*$') or token
end

-- Waiters granted by this script: the reply names them too, so a worker whose call
-- freed a slot for its own waiter does not wait for the publish to come back.
local GRANTED = {}

local function grant()
  local free = limit() - used()
  if free <= 0 then return end
  local heads = redis.call('ZRANGE', QUEUE, 0, free - 1)
  if #heads == 0 then return end
  local epoch = tostring(num('epoch', 0))
  local messages = {}
  for _, waiter in ipairs(heads) do
    redis.call('ZREM', QUEUE, waiter)
    redis.call('ZREM', WAITERS, waiter)
    redis.call('ZADD', LEASES, NOW + WAITER_TTL, waiter)
    table.insert(GRANTED, waiter)
    local worker = worker_of(waiter)
    messages[worker] = (messages[worker] or epoch) .. ' ' .. waiter
  end
  for worker, message in pairs(messages) do
    redis.call('PUBLISH', CHANNEL .. 'grant:' .. worker, message)
  end
end

-- The rules of max_pending="auto" (getty_ai_async/_auto.py), on the shared state.

local function accepted(lease_epoch)
  if FIXED > 0 then return end
  redis.call('HSET', STATE, 'streak', 0)
  local ceiling = num('ceiling', nil)
  local current = limit()
  local bound = redis.call('ZCARD', PENDING)
  if not ceiling then
    if bound >= current - math.floor(current / 4) then set_limit(current + 1) end
    return
  end
  if lease_epoch < num('epoch', 0) and bound > ceiling then
    ceiling = math.min(bound, num('refused_at', bound + 1) - 1)
    redis.call('HSET', STATE, 'ceiling', ceiling)
    set_limit(math.max(current, ceiling))
    return
  end
  local step = num('step', 1)
  if current > ceiling and step > 1 and bound >= current then
    set_limit(current + step)
    redis.call('HSET', STATE, 'step', step * 2)
  end
end

-- One more completion without a refusal; after `enough`, one above `current` at `step`.
local function clean_run(current, enough, step)
  local clean = num('clean', 0) + 1
  if clean >= enough then
    redis.call('HSET', STATE, 'clean', 0, 'step', step)
    set_limit(current + 1)
  else
    redis.call('HSET', STATE, 'clean', clean)
  end
end

local function finished()
  if FIXED > 0 then return end
  local current = limit()
  local ceiling = num('ceiling', nil)
  if not ceiling or 2 * (used() + 1) < current then return end
  local filled = redis.call('ZCARD', PENDING) + 1 >= current - math.floor(current / 4)
  if current > ceiling then
    if num('step', 1) == 1 and filled then clean_run(current, current / 4, 2) end
    return
  end
  clean_run(current, num('wait', PROBE_MIN) * current, 1)
end

local function refused(lease_epoch)
  if FIXED > 0 then return end
  local epoch = num('epoch', 0)
  if lease_epoch < epoch then return end
  local current = limit()
  local streak = num('streak', 0) + 1
  local seen = math.min(redis.call('ZCARD', PENDING), current - 1)
  local ceiling = math.max(1, seen - (2 ^ (streak - 1) - 1), math.floor(seen / 2))
  ceiling = math.floor(ceiling)
  local old = num('ceiling', nil)
  local wait = math.max(PROBE_MIN, math.floor(ceiling / 4))
  if old and math.abs(ceiling - old) <= math.max(1, math.floor(old / 4)) then
    local longest = math.min(16, math.max(PROBE_MAX, math.floor(ceiling * ceiling / 20)))
    wait = math.max(wait, math.min(num('wait', PROBE_MIN) * 2, longest))
  end
  redis.call('HSET', STATE, 'ceiling', ceiling, 'epoch', epoch + 1, 'streak', streak,
    'step', 1, 'clean', 0, 'wait', wait, 'refused_at', current)
  set_limit(ceiling)
end

local function reply(flag, extra)
  -- The first in line if it is the calling worker's: a slot that worker frees may go
  -- to that waiter at once ('-': nobody, or another worker's).
  local head = redis.call('ZRANGE', QUEUE, 0, 0)[1]
  if not head or worker_of(head) ~= WORKER then head = '-' end
  local result = {flag, num('epoch', 0), limit(), used(), redis.call('ZCARD', PENDING),
    redis.call('ZCARD', QUEUE), num('refused', 0), num('expired', 0), num('ceiling', 0), FRESH,
    FIXED, head, FIXED_BY}
  if extra then
    for _, value in ipairs(extra) do table.insert(result, value) end
  end
  for _, waiter in ipairs(GRANTED) do table.insert(result, waiter) end
  -- One string, not an array: a reply of one bulk string is far cheaper to parse.
  return table.concat(result, ' ')
end
"""

# The lease operations a worker queued while its previous call was under way, in the
# order they were made: ARGV[2...] is a run of operations, each a letter and its fields:
#   a TOKEN            a waiter: queued (kept alive if it is), granted when its turn comes
#   c TOKEN            a waiter that gave up: out of the queue, its lease back if it had one
#   b TOKEN ID EPOCH   the service accepted the lease's generation ID: bound to it
#   d ID               a generation already pending (resumed): counted once, whoever held it
#   x TOKEN FLAG EPOCH a refused submit ('1': a 429 of the pending cap) frees its lease
#   r TOKEN ID FLAG    released (ID '' if never bound; '1': the service said it finished)
#   h TOKEN ID FLAG HEIR  released as `r`, its slot handed to HEIR, the worker's waiter
#                      that a reply showed first in line, which took it at once: the
#                      count holds
_BATCH = """
setup()
purge()
grant()
local at, room, asked = 2, 0, {}
while at <= #ARGV do
  local op, token = ARGV[at], ARGV[at + 1]
  if op == 'a' then
    if not redis.call('ZSCORE', LEASES, token) then
      if not redis.call('ZSCORE', QUEUE, token) then
        redis.call('ZADD', QUEUE, redis.call('HINCRBY', STATE, 'ticket', 1), token)
      end
      redis.call('ZADD', WAITERS, NOW + WAITER_TTL, token)
    end
    table.insert(asked, token)
    at = at + 2
  elseif op == 'c' then
    redis.call('ZREM', QUEUE, token)
    redis.call('ZREM', WAITERS, token)
    redis.call('ZREM', LEASES, token)
    at = at + 2
  elseif op == 'b' then
    redis.call('ZREM', LEASES, token)
    redis.call('ZADD', PENDING, NOW + LEASE_TTL, ARGV[at + 2])
    accepted(tonumber(ARGV[at + 3]))
    at = at + 4
  elseif op == 'd' then
    redis.call('ZADD', PENDING, NOW + LEASE_TTL, token)
    at = at + 2
  elseif op == 'x' then
    redis.call('ZREM', LEASES, token)
    if ARGV[at + 2] == '1' then
      redis.call('HINCRBY', STATE, 'refused', 1)
      refused(tonumber(ARGV[at + 3]))
    end
    at = at + 4
  elseif op == 'r' then
    redis.call('ZREM', LEASES, token)
    if ARGV[at + 2] ~= '' and redis.call('ZREM', PENDING, ARGV[at + 2]) == 1 then
      if ARGV[at + 3] == '1' then finished() end
      room = room + 1
    end
    at = at + 4
  elseif op == 'h' then
    redis.call('ZREM', LEASES, token)
    if redis.call('ZREM', PENDING, ARGV[at + 2]) == 1 and ARGV[at + 3] == '1' then finished() end
    local heir = ARGV[at + 4]
    redis.call('ZREM', QUEUE, heir)
    redis.call('ZREM', WAITERS, heir)
    -- Its worker holds it now, whatever this call found: Redis counts what is held.
    redis.call('ZADD', LEASES, NOW + CLAIM_TTL, heir)
    at = at + 5
  else
    return redis.error_reply('unknown lease operation ' .. tostring(op))
  end
end
if room > 0 then redis.call('PUBLISH', CHANNEL .. 'room', tostring(room)) end
grant()
-- The worker that asked is alive: a lease it was granted lasts a claim's TTL.
for _, token in ipairs(asked) do redis.call('ZADD', LEASES, 'XX', NOW + CLAIM_TTL, token) end
return reply(1)
"""

# One round trip for everything a worker holds. ARGV[2]: '1' for a full sync (after
# Redis was lost: re-add what it no longer has), '0' for a heartbeat (only extend what it
# has: anything else was released meanwhile). Then four counted lists: waiters to keep
# in the queue, unbound lease tokens and bound generation ids to keep alive, and
# generation ids released while Redis could not be reached. Returns the waiters that
# hold a lease.
_SYNC = """
setup()
purge()
local full = ARGV[2] == '1'
local at = 3
local function take()
  local count = tonumber(ARGV[at])
  local items = {}
  for index = 1, count do items[index] = ARGV[at + index] end
  at = at + count + 1
  return items
end
local waiters, claims, bound, released = take(), take(), take(), take()
for _, waiter in ipairs(waiters) do
  if not redis.call('ZSCORE', LEASES, waiter) then
    if redis.call('ZSCORE', QUEUE, waiter) then
      redis.call('ZADD', WAITERS, NOW + WAITER_TTL, waiter)
    elseif full then
      redis.call('ZADD', QUEUE, redis.call('HINCRBY', STATE, 'ticket', 1), waiter)
      redis.call('ZADD', WAITERS, NOW + WAITER_TTL, waiter)
    end
  end
end
local mode = 'XX'
if full then mode = 'GT' end
for _, token in ipairs(claims) do redis.call('ZADD', LEASES, mode, NOW + CLAIM_TTL, token) end
for _, id in ipairs(bound) do redis.call('ZADD', PENDING, mode, NOW + LEASE_TTL, id) end
local room = 0
for _, id in ipairs(released) do room = room + redis.call('ZREM', PENDING, id) end
if room > 0 then redis.call('PUBLISH', CHANNEL .. 'room', tostring(room)) end
grant()
local granted = {}
for _, waiter in ipairs(waiters) do
  if redis.call('ZSCORE', LEASES, waiter) then
    table.insert(granted, waiter)
    redis.call('ZADD', LEASES, 'XX', NOW + CLAIM_TTL, waiter)  -- its worker is alive
  end
end
return reply(1, granted)
"""

# ARGV[2]: a worker closing: its max_pending no longer counts (a higher cap may free
# slots).
_LEAVE = """
redis.call('ZREM', WORKERS, ARGV[2])
redis.call('HDEL', CAPS, ARGV[2])
setup()
purge()
grant()
return reply(1)
"""

# A read for `getty-ai limits`: creates nothing (what expired is still dropped). After
# the counters: the live workers and their max_pending, as pairs.
_STATS = """
purge()
live_caps()
local mode = redis.call('HGET', STATE, 'mode') or ''
if LIVE > 0 then
  mode = 'auto'
  if FIXED > 0 then mode = tostring(FIXED) end
end
local workers, count = {}, 0
for _, waiter in ipairs(redis.call('ZRANGE', QUEUE, 0, -1)) do
  local worker = worker_of(waiter)
  if not workers[worker] then
    workers[worker] = true
    count = count + 1
  end
end
local result = {mode, num('limit', 0), num('ceiling', 0),
  redis.call('ZCARD', LEASES), redis.call('ZCARD', PENDING), redis.call('ZCARD', QUEUE), count,
  num('refused', 0), num('expired', 0), num('epoch', 0)}
for _, value in ipairs(redis.call('HGETALL', CAPS)) do table.insert(result, value) end
return result
"""

SCRIPTS = {
    name: _PRELUDE + body
    for name, body in {
        "batch": _BATCH,
        "sync": _SYNC,
        "leave": _LEAVE,
        "stats": _STATS,
    }.items()
}
"""Scripts on the lease keys, by name (KEYS: leases, pending, queue, waiters, state,
workers, caps)."""

QPS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local rate, burst, throttles = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local current = tonumber(redis.call('HGET', KEYS[1], 'rate') or rate)
if current > rate then current = rate end
for _ = 1, throttles do current = math.max(0.1, current * 0.7) end
if throttles > 0 then redis.call('HINCRBY', KEYS[1], 'throttled', throttles) end
local interval = 1000 / current
local arrival = math.max(tonumber(redis.call('HGET', KEYS[1], 'tat') or now), now)
local allowed = arrival - interval * (burst - 1)
redis.call('HSET', KEYS[1], 'tat', tostring(arrival + interval),
  'rate', tostring(current + (rate - current) * 0.02))
redis.call('PEXPIRE', KEYS[1], 60000)
return tostring(math.max(0, allowed - now))
"""
"""The shared request budget (GCRA, as `RateBudget`): KEYS[1] the ``qps`` hash; ARGV:
rate per second, burst, 429s seen since the last call. Returns the milliseconds to wait
before sending; a 429 slows the pace by 30%, each request wins back 2% of the gap."""
