"""The Lua scripts of a shared run: only where no Redis primitive fits.

The job pool is Redis's own (a stream and a consumer group, claims.py);
what needs a check and a change in one step is here: the rate gate's
admission (a sliding-window log with calls in flight, under the limit the
workers' replayed QuotaLearner holds: belief.py) and the credit guard's
reservation. Nothing of the learning is written here: the limit, window and
pause arrive as arguments. Redis runs each script atomically: no other command
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
-- Stream ids ("<ms>-<seq>", or "0") in Redis's order: whether a comes before b.
local function before(a, b)
  local am, as = string.match(a, '^(%d+)-?(%d*)$')
  local bm, bs = string.match(b, '^(%d+)-?(%d*)$')
  am, bm = tonumber(am), tonumber(bm)
  if am ~= bm then return am < bm end
  return (tonumber(as) or 0) < (tonumber(bs) or 0)
end
"""

GATE_ACQUIRE: Final = (
    _NOW
    + """
-- The sliding-window log of runner/scheduling/rate.py, shared: admit when
-- fewer than the learned limit were admitted in the last window + margin.
-- The limit, window, pause and probe are the caller's QuotaLearner's
-- (belief.py), passed in; the script admits only a caller whose learner has
-- seen every event of the key's stream, and answers the unseen ones instead.
-- A call counts from its end, not its admission, and as "now" while it is
-- in flight (for at most one span): the server saw it at some time before
-- its answer came back, so the next call in its slot is admitted one span
-- after that answer at the earliest, however late the call went out.
-- KEYS: log, state, inflight, epoch, events, belief. ARGV: limit, window, margin,
-- model, member, keep_ms, the epoch the caller knows ('' before its first
-- call), a fresh epoch, the learner's pause end (Redis time), 1 when the
-- call must go alone (a probe), the last event id the caller applied.
-- Returns {status, wait seconds, now, unfinished, epoch, entries, id}:
-- status 1 admitted (id: its "started" event), 0 wait (unfinished 1 when a
-- call in flight sets the wait: it may end sooner), 2 events to apply first
-- (entries, as XRANGE answers them), 3 the learner's checkpoint to load
-- first (entries: {its entry id, its state}; the entries before it may be
-- trimmed).
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
  -- A new epoch starts a new stream: what is left of an expired one, and its
  -- checkpoint, would be replayed by callers starting again from '0'.
  redis.call('DEL', KEYS[5], KEYS[6])
  if ARGV[7] ~= '' then
    redis.call('HSET', KEYS[2], 'paused_until', t + span, 'last_admit', t)
  end
end
if ARGV[7] ~= '' and ARGV[7] ~= epoch then
  -- A new epoch: the caller starts its replay again from the new stream.
  return {0, '0', fmt(t), 0, epoch, {}, ''}
end
local cp = redis.call('HMGET', KEYS[6], 'id', 'state')
if cp[1] and before(ARGV[11], cp[1]) then
  return {3, '0', fmt(t), 0, epoch, {cp[1], cp[2]}, ''}
end
local unseen = redis.call('XRANGE', KEYS[5], '(' .. ARGV[11], '+', 'COUNT', 1000)
if #unseen > 0 then
  return {2, '0', fmt(t), 0, epoch, unseen, ''}
end
local st = redis.call('HMGET', KEYS[2], 'paused_until', 'last_admit')
local paused = math.max(tonumber(st[1]) or 0, tonumber(ARGV[9]) or 0)
local last_admit = tonumber(st[2]) or 0
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
if ARGV[10] == '1' and redis.call('ZCARD', KEYS[3]) > 0 then
  -- a probe of a new window estimate goes alone
  return {0, fmt(span), fmt(t), 1, epoch, {}, ''}
end
if #times >= limit then
  local oldest = times[#times - limit + 1]
  if oldest + span > ready then
    ready = oldest + span
    if open[oldest] then unfinished = 1 end
  end
end
if ARGV[4] == 'smooth' then
  ready = math.max(ready, last_admit + span / limit)
end
if ready > t then
  return {0, fmt(ready - t), fmt(t), unfinished, epoch, {}, ''}
end
redis.call('ZADD', KEYS[1], t, ARGV[5])
redis.call('ZADD', KEYS[3], t, ARGV[5])
redis.call('HSET', KEYS[2], 'last_admit', t)
local id = redis.call('XADD', KEYS[5], '*', 'k', 's', 'at', fmt(t))
for i = 1, 6 do redis.call('PEXPIRE', KEYS[i], ARGV[6]) end
return {1, '0', fmt(t), 0, epoch, {}, id}
"""
)

GATE_DONE: Final = (
    _NOW
    + """
-- A call admitted by GATE_ACQUIRE has ended: its outcome goes into the
-- key's event stream (belief.py), and an accepted call counts from now on;
-- a refused one (429) is not spent and leaves the log (the server did not
-- count it either).
-- KEYS: log, inflight, events, belief. ARGV: member, 'a' (accepted) or 'r'
-- (refused), its admission time, the reset hint in seconds or '', 1 when the
-- hint is good only to the second, keep_ms, the last event id the caller
-- applied. Returns {checkpoint id, checkpoint state, entries}: the entries
-- after that id (this one included), for the caller to apply at once, after
-- the learner's checkpoint when the caller is behind it ('' and '' if not).
local t = now()
if ARGV[2] == 'r' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[1], ARGV[1])
elseif redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[1], 'XX', t, ARGV[1])
end
redis.call('XADD', KEYS[3], '*', 'k', ARGV[2], 'at', ARGV[3], 'now', fmt(t),
           'wait', ARGV[4], 'c', ARGV[5])
redis.call('PEXPIRE', KEYS[3], ARGV[6])
local cp = redis.call('HMGET', KEYS[4], 'id', 'state')
local after = ARGV[7]
local cp_id, cp_state = '', ''
if cp[1] and before(after, cp[1]) then
  cp_id, cp_state, after = cp[1], cp[2], cp[1]
end
return {cp_id, cp_state, redis.call('XRANGE', KEYS[3], '(' .. after, '+', 'COUNT', 1000)}
"""
)

GATE_CHECKPOINT: Final = (
    _NOW
    + """
-- Store the learner's state as of entry ARGV[1] (belief.py) and trim the
-- entries before it: a replay behind the checkpoint loads it instead.
-- Only forward, and only for an entry of this stream (not one of a stream
-- an empty restart or an expiry replaced).
-- KEYS: events, belief. ARGV: entry id, state, keep_ms. Returns 1 if stored.
local known = redis.call('HGET', KEYS[2], 'id')
if known and not before(known, ARGV[1]) then return 0 end
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'state', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
return 1
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
