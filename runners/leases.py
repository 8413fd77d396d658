"""A dispatcher's leases on the jobs it claimed: who it is, and the thread that renews them.

A claimed job is leased to its dispatcher (`db.queue.claim_jobs`); while the
dispatcher lives, `LeaseKeeper` renews the leases of its jobs in flight.  When
it dies, the leases expire and another dispatcher requeues the jobs
(`db.queue.requeue_expired`); a result is recorded only under a lease still
held (`db.queue.held_job`).
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
import threading
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from db.queue import renew_leases


def dispatcher_id() -> str:
    """This dispatcher's name in job leases: host:pid:random (unique even across pid reuse)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class LeaseKeeper:
    """Renews this dispatcher's leases of its in-flight jobs every lease/3, in short transactions.

    A thread, so that leases stay alive through data preparation, Ray's start,
    tuning and long jobs alike; it dies with the dispatcher, and then the
    leases expire and another dispatcher requeues the jobs.
    """

    def __init__(self, factory: Any, owner: str, lease: timedelta, job_ids: Iterable[int]) -> None:
        self.factory, self.owner, self.lease = factory, owner, lease
        self.in_flight = set(job_ids)
        self.lost: set[int] = set()  # requeued behind our back: their results are not ours
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mtlb-leases", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def done(self, job_id: int) -> None:
        with self._lock:
            self.in_flight.discard(job_id)

    def renew(self) -> None:
        with self._lock:
            ids = set(self.in_flight)
        with self.factory.begin() as session:
            held = renew_leases(session, self.owner, ids, self.lease)
        with self._lock:
            self.lost |= ids - held

    def _loop(self) -> None:
        while not self._stop.wait(self.lease.total_seconds() / 3):
            try:
                self.renew()
            except Exception as e:  # the database is away: try again next time
                print(f"mtlb: renewing job leases failed: {type(e).__name__}: {e}", file=sys.stderr)


__all__ = ["LeaseKeeper", "dispatcher_id"]
