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
