"""The Lua scripts that keep a run's shared state consistent.

Redis runs each script atomically: no other command runs in between, so a
check and the change it guards (a claim, a reservation, an admission) are
one step for every worker. Every time is Redis's own (``TIME``), the one
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
-- KEYS: log, state, inflight. ARGV: limit, window, margin, model, member, keep_ms.
-- Returns {1, 0, now, 0} when admitted, else {0, wait seconds, now, 1 if an
-- unfinished call sets the wait (it may end sooner) else 0}.
local t = now()
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local span = window + tonumber(ARGV[3])
local st = redis.call('HMGET', KEYS[2], 'paused_until', 'factor', 'last_change', 'last_admit')
local paused = tonumber(st[1]) or 0
local factor = tonumber(st[2]) or 1
local last_change = tonumber(st[3]) or 0
local last_admit = tonumber(st[4]) or 0
if factor < 1 and t - last_change >= window then
  -- creep back by a quarter of the budget per quiet window
  local quiet = math.floor((t - last_change) / window)
  factor = math.min(1, factor + 0.25 * quiet)
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
  return {0, fmt(ready - t), fmt(t), unfinished}
end
redis.call('ZADD', KEYS[1], t, ARGV[5])
redis.call('ZADD', KEYS[3], t, ARGV[5])
redis.call('HSET', KEYS[2], 'last_admit', t)
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[6]) end
return {1, '0', fmt(t), 0}
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
-- KEYS: state. ARGV: retry_after seconds or '', limit, window, margin, keep_ms.
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
  factor = math.max(0.125, factor / 2)
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

INIT_RUN: Final = """
-- Create the run's record on first use; afterwards return what it holds, so
-- a worker with another expansion of the manifest, budget or key layout
-- can refuse to join. KEYS: meta, credits.
-- ARGV: field/value pairs (total, jobs_digest, budget, layout, ...).
-- Returns {'new' | 'existing', field, value, field, value, ...}.
local status = 'existing'
if redis.call('EXISTS', KEYS[1]) == 0 then
  for i = 1, #ARGV, 2 do
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
  local budget = redis.call('HGET', KEYS[1], 'budget')
  if budget and budget ~= '' then redis.call('HSET', KEYS[2], 'budget', budget) end
  status = 'new'
end
local reply = {status}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do reply[#reply + 1] = v end
return reply
"""

CLAIM: Final = (
    _NOW
    + """
-- Claim the next job with a lease: first a lapsed lease (its worker died,
-- and a result it paid for is waiting), then a job handed back, then the
-- next never-claimed index. After a credit stop only jobs with a recorded
-- request id are handed out (re-attaching costs nothing).
-- KEYS: meta, cursor, returned, leases, lease, done, credits.
-- ARGV: worker, token, lease seconds.
-- Returns {kind, index, prior lease record or ''}: kind new | returned | lapsed;
-- or {'wait', seconds} (all claimed, some still leased), {'done'}, {'again'},
-- {'stopped', reason}, {'gone'} (the run's record vanished).
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
local t = now()
local ttl = tonumber(ARGV[3])
local stopped = redis.call('HGET', KEYS[7], 'stopped')
local function record(idx)
  local raw = redis.call('HGET', KEYS[5], idx)
  if raw then return raw, cjson.decode(raw) end
  return '', {}
end
local function take(idx, kind)
  local raw, rec = record(idx)
  rec.worker = ARGV[1]
  rec.token = ARGV[2]
  rec.claims = (rec.claims or 0) + 1
  redis.call('HSET', KEYS[5], idx, cjson.encode(rec))
  redis.call('ZADD', KEYS[4], t + ttl, idx)
  redis.call('HINCRBY', KEYS[1], 'claims', 1)
  if kind == 'lapsed' then redis.call('HINCRBY', KEYS[1], 'takeovers', 1) end
  return {kind, idx, raw}
end
local function usable(idx)
  if redis.call('HEXISTS', KEYS[6], idx) == 1 then return false end
  if not stopped then return true end
  local _, rec = record(idx)
  return rec.request_id ~= nil
end
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', t, 'LIMIT', 0, 32)
for _, idx in ipairs(lapsed) do
  if redis.call('HEXISTS', KEYS[6], idx) == 1 then
    redis.call('ZREM', KEYS[4], idx)
  elseif usable(idx) then
    return take(idx, 'lapsed')
  end
end
local back = redis.call('LRANGE', KEYS[3], 0, -1)
for i = #back, 1, -1 do
  local idx = back[i]
  if redis.call('HEXISTS', KEYS[6], idx) == 1 then
    redis.call('LREM', KEYS[3], 0, idx)
  elseif usable(idx) then
    redis.call('LREM', KEYS[3], 0, idx)
    return take(idx, 'returned')
  end
end
if stopped then return {'stopped', stopped} end
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
local steps = 0
while cur < total and steps < 1000 do
  local idx = tostring(cur)
  cur = cur + 1
  steps = steps + 1
  if redis.call('HEXISTS', KEYS[6], idx) == 0 and not redis.call('ZSCORE', KEYS[4], idx) then
    redis.call('SET', KEYS[2], cur)
    return take(idx, 'new')
  end
end
redis.call('SET', KEYS[2], cur)
if cur < total then return {'again'} end
local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
if #first == 0 then return {'done'} end
return {'wait', fmt(math.max(0, tonumber(first[2]) - t))}
"""
)

NOTE: Final = """
-- Record on the lease what a taker needs: 'submitting' (a death from now on
-- leaves the submit ambiguous) or 'submitted' with the request id.
-- KEYS: lease. ARGV: index, token, state, request id or '', submitted_at or ''.
-- Returns 1, or 0 when the lease is no longer this token's.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local rec = cjson.decode(raw)
if rec.token ~= ARGV[2] then return 0 end
rec.state = ARGV[3]
if ARGV[3] == 'submitting' then
  rec.request_id = nil
  rec.submitted_at = nil
  rec.attempts = (rec.attempts or 0) + 1
else
  rec.request_id = ARGV[4]
  rec.submitted_at = tonumber(ARGV[5])
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec))
return 1
"""

FINISH: Final = (
    _NOW
    + """
-- A job leaves a worker. completed | failed | expired: its final state for
-- the run, set once (only by the lease's holder). unsent | left: handed
-- back; 'unsent' forgets a submit that never went out, 'left' keeps what
-- the lease recorded (a request id to re-attach to).
-- KEYS: lease, leases, done, meta, returned. ARGV: index, token, outcome, job key, worker.
-- Returns 'ok', 'already' (another worker finished it) or 'lost' (the lease is another's).
local idx, outcome = ARGV[1], ARGV[3]
if redis.call('HEXISTS', KEYS[3], idx) == 1 then return 'already' end
local raw = redis.call('HGET', KEYS[1], idx)
if not raw then return 'lost' end
local rec = cjson.decode(raw)
if rec.token ~= ARGV[2] then return 'lost' end
redis.call('ZREM', KEYS[2], idx)
if outcome == 'unsent' or outcome == 'left' then
  rec.worker = nil
  rec.token = nil
  if outcome == 'unsent' and rec.state == 'submitting' then rec.state = nil end
  redis.call('HSET', KEYS[1], idx, cjson.encode(rec))
  redis.call('LPUSH', KEYS[5], idx)
  redis.call('HINCRBY', KEYS[4], 'returns', 1)
  return 'ok'
end
local entry = {state = outcome, worker = ARGV[5], key = ARGV[4], at = now()}
if rec.request_id then entry.request_id = rec.request_id end
redis.call('HSET', KEYS[3], idx, cjson.encode(entry))
redis.call('HDEL', KEYS[1], idx)
redis.call('HINCRBY', KEYS[4], outcome, 1)
return 'ok'
"""
)

RECONCILE: Final = (
    _NOW
    + """
-- A worker tells the run what its own ledger knows (at start, and for a job
-- it claims and finds already finished in its folder): final states the
-- run has not recorded (the coordinator was lost before this worker could
-- say), and request ids of jobs it submitted, so whoever claims them
-- re-attaches instead of paying again.
-- KEYS: meta, cursor, returned, leases, lease, done.
-- ARGV: worker, then groups of 5: index, job key, state, request id or '', submitted_at or ''.
-- Returns the indexes newly marked done, each followed by its state.
local t = now()
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
local marked = {}
for i = 2, #ARGV, 5 do
  local idx, key, state, rid, at = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  if redis.call('HEXISTS', KEYS[6], idx) == 0 then
    if state == 'submitted' then
      local raw = redis.call('HGET', KEYS[5], idx)
      local rec = {}
      if raw then rec = cjson.decode(raw) end
      if not rec.request_id then
        rec.request_id = rid
        rec.submitted_at = tonumber(at)
        rec.state = 'submitted'
        redis.call('HSET', KEYS[5], idx, cjson.encode(rec))
      end
      local leased = redis.call('ZSCORE', KEYS[4], idx)
      if not leased and tonumber(idx) < cur and redis.call('LPOS', KEYS[3], idx) == false then
        redis.call('LPUSH', KEYS[3], idx)
      end
    else
      local entry = {state = state, worker = ARGV[1], key = key, at = t, via = 'reconcile'}
      if rid ~= '' then entry.request_id = rid end
      redis.call('HSET', KEYS[6], idx, cjson.encode(entry))
      redis.call('HDEL', KEYS[5], idx)
      redis.call('ZREM', KEYS[4], idx)
      redis.call('LREM', KEYS[3], 0, idx)
      redis.call('HINCRBY', KEYS[1], state, 1)
      marked[#marked + 1] = idx
      marked[#marked + 1] = state
    end
  end
end
return marked
"""
)

REQUEUE: Final = """
-- Put jobs that ended failed or expired back in the pool (--retry-failed,
-- --resubmit-expired). KEYS: done, returned, meta. ARGV: states wanted, then indexes.
-- Returns how many went back.
local wanted = {}
for state in string.gmatch(ARGV[1], '[^,]+') do wanted[state] = true end
local n = 0
for i = 2, #ARGV do
  local raw = redis.call('HGET', KEYS[1], ARGV[i])
  if raw then
    local entry = cjson.decode(raw)
    if wanted[entry.state] then
      redis.call('HDEL', KEYS[1], ARGV[i])
      redis.call('LPUSH', KEYS[2], ARGV[i])
      redis.call('HINCRBY', KEYS[3], entry.state, -1)
      n = n + 1
    end
  end
end
return n
"""

RENEW: Final = (
    _NOW
    + """
-- The heartbeat: renew every lease this worker holds (index, token) and
-- say it is alive. KEYS: leases, lease, seen. ARGV: worker, lease seconds, then pairs.
-- Returns {workers seen within a lease, then the indexes no longer this worker's}.
local t = now()
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], fmt(t))
local alive = 0
for _, seen in ipairs(redis.call('HVALS', KEYS[3])) do
  if t - tonumber(seen) <= ttl then alive = alive + 1 end
end
local reply = {alive}
for i = 3, #ARGV, 2 do
  local idx, token = ARGV[i], ARGV[i + 1]
  local raw = redis.call('HGET', KEYS[2], idx)
  if raw and cjson.decode(raw).token == token then
    redis.call('ZADD', KEYS[1], t + ttl, idx)
  else
    reply[#reply + 1] = idx
  end
end
return reply
"""
)

SERVER_TIME: Final = _NOW + "\nreturn fmt(now())\n"
