"""The meters in Redis, shared by every worker of every replica that uses the same server.

One round trip admits a request (ADMIT checks and counts every meter of it at once) and
one settles it (SETTLE), each a Lua script run atomically by Redis through EVALSHA
(redis-py loads it again after a restart). The scripts keep the window rule of
store.base exactly as MeterTable does in memory; tests run the same cases through both.

    minute meter   a hash: field = bucket number, value = the count taken in it;
                   buckets that left the window are deleted as the meter is read
    in-flight      a sorted set: member = the request's id, score = when its hold lapses
                   (`lease_ms` after admission: a replica that dies frees its slots then)

Time is Redis' own clock (TIME), one clock for every replica, unless a `clock` is given
(tests). Keys are "gateway:limits:<meter name>"; every key of a request must live on one
server, so a Redis Cluster is not supported.

An admission waits at most `timeout` seconds; then, or when Redis is unreachable, it raises
StoreError and the policy applies store.on_error. An admission that was given up on but
still reaches Redis is undone as soon as its answer arrives, so a request is never
counted without being admitted. After FAILURES_TO_PAUSE failures in a row the store
stops asking for PAUSE seconds (every admission fails at once), then tries again; the
client's connection pool reconnects by itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .base import BUCKET_MS, BUCKETS, Meter, Reading, SettleFailed, StoreError, Verdict

PREFIX = "gateway:limits:"
SOCKET_TIMEOUT = 1.0  # seconds: how long what runs in the background (a settling, an answer given up on) may wait
FAILURES_TO_PAUSE = 3
PAUSE = 0.5  # seconds without asking, after FAILURES_TO_PAUSE failures in a row

NOW = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""  # both scripts' clock: ARGV[1] in ms, or Redis' own when it is ''

# ARGV: now in ms ('' for Redis' clock), BUCKET_MS, BUCKETS, the request's id, the in-flight lease
# in ms, then "limit amount kind ..." for each key (kind: w a minute, f in flight)
ADMIT = (
    NOW
    + """
local width, buckets, ticket, lease = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local bucket = math.floor(now / width)
local oldest = bucket - buckets
local spec = {}
for word in string.gmatch(ARGV[6], '%S+') do spec[#spec + 1] = word end
local result = {1, bucket}
local windows = {}
for i, key in ipairs(KEYS) do
  local limit, amount, kind = tonumber(spec[i * 3 - 2]), tonumber(spec[i * 3 - 1]), spec[i * 3]
  local used, wait = 0, 0
  if kind == 'f' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    used = redis.call('ZCARD', key)
    if used + amount > limit then
      if amount > limit then wait = -1 else wait = -2 end
    end
  else
    local fields = redis.call('HGETALL', key)
    local counts, stale = {}, {}
    for j = 1, #fields, 2 do
      local b = tonumber(fields[j])
      if b < oldest then
        stale[#stale + 1] = fields[j]
      else
        local c = tonumber(fields[j + 1])
        used = used + c
        counts[#counts + 1] = {b, c}
      end
    end
    if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
    windows[i] = counts
    if used + amount > limit then
      table.sort(counts, function(x, y) return x[1] < y[1] end)
      if amount > limit then
        wait = -1
      else
        local left = used
        for _, pair in ipairs(counts) do
          left = left - pair[2]
          if left + amount <= limit then
            wait = (pair[1] + buckets + 1) * width - now
            break
          end
        end
      end
    end
  end
  if wait ~= 0 then result[1] = 0 end
  result[#result + 1] = used
  result[#result + 1] = wait
  result[#result + 1] = 0
end
for i, key in ipairs(KEYS) do
  local amount, kind = tonumber(spec[i * 3 - 1]), spec[i * 3]
  if kind == 'f' then
    if result[1] == 1 then
      redis.call('ZADD', key, now + lease, ticket)
      if redis.call('PTTL', key) < lease then redis.call('PEXPIRE', key, lease) end
    end
  else
    local newest = nil
    if result[1] == 1 then
      redis.call('HINCRBY', key, bucket, amount)
      redis.call('PEXPIRE', key, (buckets + 2) * width)
      newest = bucket
    else
      for _, pair in ipairs(windows[i]) do
        if newest == nil or pair[1] > newest then newest = pair[1] end
      end
    end
    if newest then result[2 + i * 3] = (newest + buckets + 1) * width - now end
  end
end
for i, number in ipairs(result) do result[i] = string.format('%d', number) end
return table.concat(result, ' ')
"""
)

# ARGV: now, BUCKET_MS, BUCKETS, the request's id, the bucket it was counted in, then "kind change ..."
SETTLE = (
    NOW
    + """
local width, buckets, ticket, taken = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local current = math.floor(now / width)
local spec = {}
for word in string.gmatch(ARGV[6], '%S+') do spec[#spec + 1] = word end
for i, key in ipairs(KEYS) do
  local kind, change = spec[i * 2 - 1], tonumber(spec[i * 2])
  if kind == 'f' then
    redis.call('ZREM', key, ticket)
  elseif change ~= 0 and taken >= current - buckets then
    if redis.call('HINCRBY', key, taken, change) <= 0 then redis.call('HDEL', key, taken) end
    if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, (buckets + 2) * width) end
  end
end
return 1
"""
)


class RedisStore:
    """A `Store` in Redis at `url`, through redis-py's asyncio client and its connection pool."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        lease: float,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """`timeout`: seconds an admission may wait; `lease`: seconds an in-flight slot is held at
        most; `clock`: seconds, for tests (None: Redis' own clock)."""
        self.client = aioredis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        self.timeout = timeout
        self.lease_ms = round(lease * 1000)
        self.clock = clock
        self._admit = self.client.register_script(ADMIT)
        self._settle = self.client.register_script(SETTLE)
        self._pending: set[asyncio.Task[Any]] = set()
        self._failures = 0
        self._paused_until = 0.0

    async def admit(self, meters: Sequence[Meter], *, ticket: str) -> Verdict:
        if self._failures >= FAILURES_TO_PAUSE and time.monotonic() < self._paused_until:
            raise StoreError("unreachable", "not asked: Redis failed just before")
        spec = " ".join(f"{limit} {amount} {'f' if in_flight else 'w'}" for _, limit, amount, in_flight in meters)
        args = (self._now(), BUCKET_MS, BUCKETS, ticket, self.lease_ms, spec)
        call = asyncio.ensure_future(self._admit(keys=[PREFIX + meter.name for meter in meters], args=args))
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    answer = await asyncio.shield(call)
            except TimeoutError:
                answer = await answered(call)  # a loop too busy to hand over an answer that came in time
        except BaseException as exc:  # too slow, failed, or the client went away meanwhile
            call.add_done_callback(lambda done: self._undo(done, meters, ticket))
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise self._failed(exc) from None
        self._failures = 0
        return verdict(answer)

    def settle(
        self, meters: Sequence[Meter], changes: Sequence[int], *, ticket: str, bucket: int, on_error: SettleFailed
    ) -> None:
        spec = " ".join(
            f"{'f' if meter.in_flight else 'w'} {change}" for meter, change in zip(meters, changes, strict=True)
        )
        args = (self._now(), BUCKET_MS, BUCKETS, ticket, bucket, spec)
        call = self._settle(keys=[PREFIX + meter.name for meter in meters], args=args)
        task = asyncio.ensure_future(call)
        self._pending.add(task)

        def done(task: asyncio.Task[Any]) -> None:
            self._pending.discard(task)
            if not task.cancelled() and task.exception() is not None:
                on_error(self._failed(task.exception()))

        task.add_done_callback(done)

    async def drain(self) -> None:
        """Wait for the settlings still being sent (at most SOCKET_TIMEOUT seconds)."""
        if self._pending:
            await asyncio.wait(self._pending, timeout=SOCKET_TIMEOUT)

    async def aclose(self) -> None:
        await self.drain()
        await self.client.aclose()
        await self.client.connection_pool.disconnect()

    def _now(self) -> int | str:
        return "" if self.clock is None else round(self.clock() * 1000)

    def _undo(self, call: asyncio.Future[Any], meters: Sequence[Meter], ticket: str) -> None:
        """An admission given up on that Redis counted all the same: give it back."""
        if call.cancelled() or call.exception() is not None:
            return
        counted = verdict(call.result())
        if counted.admitted:
            changes = [-meter.amount for meter in meters]
            self.settle(meters, changes, ticket=ticket, bucket=counted.bucket, on_error=lambda _: None)

    def _failed(self, exc: BaseException | None) -> StoreError:
        self._failures += 1
        if self._failures >= FAILURES_TO_PAUSE:
            self._paused_until = time.monotonic() + PAUSE
        if isinstance(exc, (TimeoutError, redis.exceptions.TimeoutError)):
            return StoreError("timeout", f"Redis did not answer within {self.timeout * 1000:g} ms")
        if isinstance(exc, (redis.exceptions.ConnectionError, OSError)):
            return StoreError("unreachable", f"{type(exc).__name__}: {exc}")
        return StoreError("error", f"{type(exc).__name__}: {exc}")


async def answered(call: asyncio.Future[Any]) -> Any:
    """The answer of a call whose wait timed out, when it had already arrived: a busy event loop
    runs a deadline's timer in the same turn as the socket's read, before the read is handed
    to the waiting call. Raises TimeoutError when it is still missing two turns later."""
    for _ in range(2):
        if call.done():
            return call.result()
        await asyncio.sleep(0)
    if call.done():
        return call.result()
    raise TimeoutError


def verdict(answer: bytes) -> Verdict:
    """ADMIT's answer, numbers in one string (parsed at a fraction of the cost of an array's
    replies): admitted, bucket, then used, wait and reset of each meter."""
    numbers = [int(number) for number in answer.split()]
    readings = tuple(Reading(*numbers[at : at + 3]) for at in range(2, len(numbers), 3))
    return Verdict(bool(numbers[0]), readings, numbers[1])
