"""Messages per second per Wavix account: a token bucket in Redis, shared by every worker on every machine.

On the embedded default (no Redis) the bucket lives in the worker process, which is enough there: one drain
per account sends at a time. A 429 from Wavix puts the account on a quarter of its rate for a while.
"""

import threading
import time

from django.conf import settings

SLOWDOWN_SECONDS = 30
SLOWDOWN_FACTOR = 4

# KEYS: tokens, timestamp, slow-down flag. ARGV: rate per second, slowed rate. Returns the wait (seconds) before
# a token is available; 0 means one was taken. Redis's own clock, so workers on several machines agree; the
# slow-down flag is read here too, so a token costs one round trip.
_TAKE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 1 then rate = tonumber(ARGV[2]) end
local capacity = math.max(rate, 1)
local tokens = tonumber(redis.call('GET', KEYS[1]) or capacity)
local stamp = tonumber(redis.call('GET', KEYS[2]) or now)
tokens = math.min(capacity, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('SET', KEYS[1], tostring(tokens), 'EX', 120)
redis.call('SET', KEYS[2], tostring(now), 'EX', 120)
return tostring(wait)
"""

_redis = None
_script = None
_local: dict[int, tuple[float, float]] = {}
_local_lock = threading.Lock()
_slow_until: dict[int, float] = {}


def _client():
    global _redis, _script
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        _script = _redis.register_script(_TAKE)
    return _redis, _script


def _slowed(rate: float) -> float:
    return max(rate / SLOWDOWN_FACTOR, 0.5)


def effective_rate(account_id: int, rate: float) -> float:
    if settings.REDIS_URL:
        slowed = _client()[0].exists(_slow_key(account_id))
    else:
        slowed = _slow_until.get(account_id, 0) > time.monotonic()
    return _slowed(rate) if slowed else rate


def take(account_id: int, rate: float) -> float:
    """Take one token for the account; returns 0, or how many seconds until one is available."""
    if settings.REDIS_URL:
        _, script = _client()
        keys = [f"ratelimit:{account_id}:tokens", f"ratelimit:{account_id}:at", _slow_key(account_id)]
        return float(script(keys=keys, args=[rate, _slowed(rate)]))
    rate = effective_rate(account_id, rate)
    capacity = max(rate, 1.0)  # at most a second's worth of burst
    with _local_lock:
        now = time.monotonic()
        tokens, stamp = _local.get(account_id, (capacity, now))
        tokens = min(capacity, tokens + (now - stamp) * rate)
        if tokens >= 1:
            _local[account_id] = (tokens - 1, now)
            return 0.0
        _local[account_id] = (tokens, now)
        return (1 - tokens) / rate


def _slow_key(account_id: int) -> str:
    return f"ratelimit:slow:{account_id}"


def slow_down(account_id: int) -> None:
    """Wavix said 429: send at a quarter of the rate for a while (a new 429 extends it)."""
    if settings.REDIS_URL:
        _client()[0].set(_slow_key(account_id), 1, ex=SLOWDOWN_SECONDS)
    else:
        _slow_until[account_id] = time.monotonic() + SLOWDOWN_SECONDS
