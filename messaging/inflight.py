"""Calls in flight on a thread pool, while the caller's thread keeps every database read and write.

Both drains use it: sending to Wavix (services/sending.py) and forwarding to 3CX (services/forwarding.py). One
call at a time, a drain could never beat 1 / round-trip, whatever the rate allowed; the threads only do HTTP,
so a database connection is never shared across threads and each answer is recorded by the drain's own thread.
"""

from collections.abc import Callable
from concurrent import futures
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")


class InFlight(Generic[Item]):
    """Up to `size` calls at once, each about one item; record(item, answer) runs on the caller's thread.

    Used as a context manager: leaving it waits for every call still on its way and records its answer, whatever
    made the drain stop — a call made is never left unrecorded.
    """

    def __init__(self, size: int, name: str, record: Callable[[Item, Any], None]) -> None:
        self.size = max(1, size)
        self._record = record
        self._pool = futures.ThreadPoolExecutor(max_workers=self.size, thread_name_prefix=name)
        self._calls: dict[futures.Future, Item] = {}

    def __len__(self) -> int:
        return len(self._calls)

    @property
    def free(self) -> int:
        return self.size - len(self._calls)

    def start(self, item: Item, call: Callable[..., Any], *args: Any) -> None:
        self._calls[self._pool.submit(call, *args)] = item

    def settle(self, timeout: float | None = None, gather: float = 0.0) -> list[tuple[Item, Any]]:
        """Wait until at least one call has answered (or `timeout` s), then up to `gather` s more for the calls
        still on their way; record each answer; return them. Answers recorded together can be written together."""
        done, waiting = futures.wait(self._calls, timeout=timeout, return_when=futures.FIRST_COMPLETED)
        if done and waiting and gather > 0:
            more, _ = futures.wait(waiting, timeout=gather, return_when=futures.ALL_COMPLETED)
            done |= more
        settled = []
        for future in done:
            item, answer = self._calls.pop(future), future.result()
            self._record(item, answer)
            settled.append((item, answer))
        return settled

    def __enter__(self) -> "InFlight[Item]":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for future in futures.as_completed(self._calls):
                self._record(self._calls[future], future.result())
        finally:
            self._calls.clear()
            self._pool.shutdown()
