"""Races with real commits: callables run on threads released together by one barrier."""

from __future__ import annotations

import threading
from collections import Counter

from django.db import connection

THREADS = 16


def run_together(calls, threads: int = THREADS) -> Counter:
    """Run the callables on `threads` threads released at once; count outcomes by name.

    An outcome is "ok" or the name of the exception a call raised. Each thread closes its own
    database connection, so the test database can be dropped afterwards.
    """
    outcomes: Counter = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(threads)
    queue = list(calls)

    def worker():
        try:
            barrier.wait()
            while True:
                with lock:
                    if not queue:
                        return
                    call = queue.pop()
                try:
                    call()
                    result = "ok"
                except Exception as exc:
                    result = type(exc).__name__
                with lock:
                    outcomes[result] += 1
        finally:
            connection.close()

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return outcomes
