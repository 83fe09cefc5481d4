"""Run a function from several threads released at the same instant."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_together(fn: Callable[[int], T], n: int) -> list[T]:
    """Call fn(0..n-1) from n threads that start together; results in completion order.
    An exception in a thread fails the caller."""
    start = threading.Barrier(n)
    results: list[T] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        start.wait()
        try:
            value = fn(i)
        except BaseException as exc:
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append(value)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results
