"""One at a time across workers: a cache lock around work that must not run twice at once."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.cache import cache

logger = logging.getLogger(__name__)


@contextmanager
def one_at_a_time(key: str, *, timeout: int, owner: str = "running", cache_down: bool | None = None) -> Iterator[bool]:
    """Yield True holding the lock `key` (released on leaving), or False while another holder has it.

    `timeout` (seconds) frees the lock of a holder that died; make it longer than the work can take. The cache
    being down raises, unless `cache_down` says what to yield then (True: go on without the lock, where something
    else keeps the work single).
    """
    try:
        held: bool | None = cache.add(key, owner, timeout=timeout)
    except Exception:
        if cache_down is None:
            raise
        logger.warning("locks: cache unreachable; %s %s", "going on without" if cache_down else "skipping", key)
        held = None
    if held is None:
        yield bool(cache_down)
        return
    if not held:
        yield False
        return
    try:
        yield True
    finally:
        try:
            cache.delete(key)
        except Exception:  # noqa: BLE001 - the timeout frees it
            logger.warning("locks: could not release %s; it expires in %s s", key, timeout)


def still_holding(key: str, *, timeout: int) -> None:
    """Renew a lock one_at_a_time() gave for another `timeout` seconds: work that renews as it goes can take a short
    timeout, so that a holder killed mid-work blocks the next one for that long instead of for the longest the work
    could take. (Renewing a lock that already expired, and another holder took, only lengthens theirs: use it where
    two holders at once are safe, merely wasteful.)"""
    try:
        cache.touch(key, timeout)
    except Exception:  # noqa: BLE001 - the lock expires and the next holder waits that much less
        logger.warning("locks: could not renew %s", key)
