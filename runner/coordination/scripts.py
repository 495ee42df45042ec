"""The Lua scripts of a shared run: only where no Redis primitive fits.

The job pool is Redis's own (a stream and a consumer group, claims.py);
what needs a check and a change in one step is here: the rate gate's
admission (a sliding-window log with calls in flight) and the credit
guard's reservation. Redis runs each script atomically: no other command
runs in between, so the check and the change it guards are one step for
every worker. Every time is Redis's own (``TIME``), the one
clock all workers share; scripts that call it are replicated as their
effects (the default since Redis 5).

Times and amounts travel as text: Redis turns a Lua number into an
*integer* reply, so fractional seconds are formatted with ``%.6f``; money is
integer micro-USD, exact in a Lua double up to $9 billion.

Keys are passed in KEYS (never built inside a script) so a run's keys stay
in one cluster slot; see identity.py for what each key holds.
"""

from __future__ import annotations

from typing import Final

_NOW: Final = """
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.6f', x) end
"""

GATE_ACQUIRE: Final = (
    _NOW
    + """
-- The sliding-window log of runner/scheduling/rate.py, shared: admit when
-- fewer than the (429-cut) limit were admitted in the last window + margin.
-- A call counts from its end, not its admission, and as "now" while it is
-- in flight (for at most one span): the server saw it at some time before
-- its answer came back, so the next call in its slot is admitted one span
-- after that answer at the earliest, however late the call went out.
-- KEYS: log, state, inflight, epoch. ARGV: limit, window, margin, model, member,
-- keep_ms, the epoch the caller knows ('' before its first call), a fresh epoch,
-- creep (rate.py's CREEP).
-- Returns {1, 0, now, 0, epoch} when admitted, else {0, wait seconds, now, 1 if
-- an unfinished call sets the wait (it may end sooner) else 0, epoch}.
local t = now()
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local span = window + tonumber(ARGV[3])
local epoch = redis.call('GET', KEYS[4])
if not epoch then
  -- No epoch: a gate never used, or a Redis that came back empty. A caller
  -- that knew an epoch saw calls the empty log has forgotten: nobody is
  -- admitted until a whole span has passed with no admission.
  epoch = ARGV[8]
  redis.call('SET', KEYS[4], epoch, 'PX', ARGV[6])
  if ARGV[7] ~= '' then
    redis.call('HSET', KEYS[2], 'paused_until', t + span, 'last_admit', t)
  end
end
local st = redis.call('HMGET', KEYS[2], 'paused_until', 'factor', 'last_change', 'last_admit')
local paused = tonumber(st[1]) or 0
local factor = tonumber(st[2]) or 1
local last_change = tonumber(st[3]) or 0
local last_admit = tonumber(st[4]) or 0
if factor < 1 and t - last_change >= window then
  -- creep back by a quarter of the budget per quiet window
  local quiet = math.floor((t - last_change) / window)
  factor = math.min(1, factor + tonumber(ARGV[9]) * quiet)
  last_change = t
  redis.call('HSET', KEYS[2], 'factor', factor, 'last_change', last_change)
end
local eff = math.max(1, math.floor(limit * factor))
local ready = math.max(t, paused)
-- A call in flight for a whole span: its worker died, or it hung; it counts
-- from its admission from now on.
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', t - span)
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', t - span)) do
  if not redis.call('ZSCORE', KEYS[3], member) then redis.call('ZREM', KEYS[1], member) end
end
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local times = {}
local open = {}
for i = 1, #entries, 2 do
  local at = tonumber(entries[i + 1])
  if redis.call('ZSCORE', KEYS[3], entries[i]) then
    at = t
    open[at] = true
  end
  times[#times + 1] = at
end
table.sort(times)
local unfinished = 0
if #times >= eff then
  local oldest = times[#times - eff + 1]
  if oldest + span > ready then
    ready = oldest + span
    if open[oldest] then unfinished = 1 end
  end
end
if ARGV[4] == 'smooth' then
  ready = math.max(ready, last_admit + span / eff)
end
if ready > t then
  return {0, fmt(ready - t), fmt(t), unfinished, epoch}
end
redis.call('ZADD', KEYS[1], t, ARGV[5])
redis.call('ZADD', KEYS[3], t, ARGV[5])
redis.call('HSET', KEYS[2], 'last_admit', t)
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[6]) end
return {1, '0', fmt(t), 0, epoch}
"""
)

GATE_DONE: Final = (
    _NOW
    + """
-- A call admitted by GATE_ACQUIRE has ended: from now on it counts from now.
-- KEYS: log, inflight. ARGV: member.
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[1], 'XX', now(), ARGV[1])
end
return 0
"""
)

GATE_LIMITED: Final = (
    _NOW
    + """
-- A 429: pause every worker until the server's reset and halve the shared
-- limit, at most once per window (a burst of 429s is one signal).
-- KEYS: state. ARGV: retry_after seconds or '', limit, window, margin, keep_ms,
-- cut and its floor (rate.py's CUT, MIN_FACTOR).
local t = now()
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local span = window + tonumber(ARGV[4])
local wait = tonumber(ARGV[1]) or span / limit
local st = redis.call('HMGET', KEYS[1], 'paused_until', 'factor', 'last_change')
local paused = math.max(tonumber(st[1]) or 0, t + wait)
local factor = tonumber(st[2]) or 1
local last_change = tonumber(st[3]) or 0
if t - last_change >= window or factor == 1 then
  factor = math.max(tonumber(ARGV[7]), factor * tonumber(ARGV[6]))
  last_change = t
end
redis.call('HSET', KEYS[1], 'paused_until', paused, 'factor', factor, 'last_change', last_change)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return fmt(paused - t)
"""
)

CREDITS: Final = """
-- The credit guard of runner/scheduling/credits.py, shared by the run.
-- KEYS: credits, held. ARGV: op, job key, amount (micro-USD) or ''.
-- ops: reserve, hold, settle, refund, ambiguous, stop (ARGV[2] is the reason),
-- read, and the *_if_held forms used when a worker reconciles its ledger
-- (they change nothing unless the job still holds a reservation, so an
-- outcome is never counted twice).
-- Returns {result, reserved, spent, ambiguous, refunded, budget or -1, stop reason or ''}.
local op = ARGV[1]
local key = ARGV[2]
local function get(name) return tonumber(redis.call('HGET', KEYS[1], name) or '0') end
local function totals(result)
  local budget = redis.call('HGET', KEYS[1], 'budget')
  return {result, get('reserved'), get('spent'), get('ambiguous'), get('refunded'),
          tonumber(budget or '-1'), redis.call('HGET', KEYS[1], 'stopped') or ''}
end
local function take()
  local held = tonumber(redis.call('HGET', KEYS[2], key) or '0')
  redis.call('HDEL', KEYS[2], key)
  -- Lua formats minus zero as "-0", which HINCRBY refuses: skip a zero hold.
  if held ~= 0 then redis.call('HINCRBY', KEYS[1], 'reserved', -held) end
  return held
end
if op == 'reserve' then
  if redis.call('HEXISTS', KEYS[1], 'stopped') == 1 then return totals(0) end
  if redis.call('HEXISTS', KEYS[2], key) == 1 then return totals(1) end
  local amount = tonumber(ARGV[3])
  local budget = redis.call('HGET', KEYS[1], 'budget')
  if budget and get('reserved') + get('spent') + get('ambiguous') + amount > tonumber(budget) then
    return totals(0)
  end
  redis.call('HSET', KEYS[2], key, amount)
  redis.call('HINCRBY', KEYS[1], 'reserved', amount)
  return totals(1)
end
if op == 'hold' then
  -- A job already submitted (re-attached): it may be billed, so it is held
  -- whatever the budget or a stop says; once per job key.
  if redis.call('HEXISTS', KEYS[2], key) == 1 then return totals(1) end
  local amount = tonumber(ARGV[3])
  redis.call('HSET', KEYS[2], key, amount)
  redis.call('HINCRBY', KEYS[1], 'reserved', amount)
  return totals(1)
end
local suffix = '_if_held'
local only_held = string.sub(op, -#suffix) == suffix
if only_held then
  op = string.sub(op, 1, -#suffix - 1)
  if redis.call('HEXISTS', KEYS[2], key) == 0 then return totals(0) end
end
if op == 'settle' then
  -- No hold: the job was settled already (a stalled worker's late settle,
  -- after its taker settled): refused, counted once.
  if redis.call('HEXISTS', KEYS[2], key) == 0 then return totals(0) end
  local held = take()
  local spent = tonumber(ARGV[3]) or held
  redis.call('HINCRBY', KEYS[1], 'spent', spent)
  return totals(spent)
elseif op == 'refund' then
  redis.call('HINCRBY', KEYS[1], 'refunded', take())
  return totals(0)
elseif op == 'ambiguous' then
  redis.call('HINCRBY', KEYS[1], 'ambiguous', take())
  return totals(0)
elseif op == 'stop' then
  redis.call('HSETNX', KEYS[1], 'stopped', key)
  return totals(0)
elseif op == 'read' then
  return totals(0)
end
return redis.error_reply('unknown credits op ' .. op)
"""
