"""Messages per second per Wavix account: a token bucket in Redis, shared by every worker on every machine.

On the embedded default (no Redis) the bucket lives in the worker process, which is enough there: one drain
per account sends at a time. A 429 from Wavix puts the account on a quarter of its rate for a while.
"""

import threading
import time

from django.conf import settings

SLOWDOWN_SECONDS = 30
SLOWDOWN_FACTOR = 4

# KEYS: tokens, timestamp. ARGV: rate per second, capacity. Returns the wait (seconds) before a token is
# available; 0 means one was taken. Redis's own clock, so workers on several machines agree.
_TAKE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate, capacity = tonumber(ARGV[1]), tonumber(ARGV[2])
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


def effective_rate(account_id: int, rate: float) -> float:
    if settings.REDIS_URL:
        slowed = _client()[0].exists(f"ratelimit:slow:{account_id}")
    else:
        slowed = _slow_until.get(account_id, 0) > time.monotonic()
    return max(rate / SLOWDOWN_FACTOR, 0.5) if slowed else rate


def take(account_id: int, rate: float) -> float:
    """Take one token for the account; returns 0, or how many seconds until one is available."""
    rate = effective_rate(account_id, rate)
    capacity = max(rate, 1.0)  # at most a second's worth of burst
    if settings.REDIS_URL:
        _, script = _client()
        return float(
            script(keys=[f"ratelimit:{account_id}:tokens", f"ratelimit:{account_id}:at"], args=[rate, capacity])
        )
    with _local_lock:
        now = time.monotonic()
        tokens, stamp = _local.get(account_id, (capacity, now))
        tokens = min(capacity, tokens + (now - stamp) * rate)
        if tokens >= 1:
            _local[account_id] = (tokens - 1, now)
            return 0.0
        _local[account_id] = (tokens, now)
        return (1 - tokens) / rate


def slow_down(account_id: int) -> None:
    """Wavix said 429: send at a quarter of the rate for a while (a new 429 extends it)."""
    if settings.REDIS_URL:
        _client()[0].set(f"ratelimit:slow:{account_id}", 1, ex=SLOWDOWN_SECONDS)
    else:
        _slow_until[account_id] = time.monotonic() + SLOWDOWN_SECONDS
