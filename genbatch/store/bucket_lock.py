"""One driver at a time per prefix in object storage: a lock object taken with a conditional write.

The lock is ``PREFIX/.genbatch.lock``, created only where none is (S3 ``If-None-Match: *``, GCS's
generation precondition), holding who took it and when it was last renewed. The driver renews
it every :data:`LEASE` / 4 seconds and deletes it when the run ends. A kill leaves it behind; it
is then taken over by the next run when its holder is a process on the same machine that is no
longer running, or when it has not been renewed for :data:`LEASE` seconds (a driver on a lost
node). On S3 a takeover is a conditional write too (``If-Match`` the stale lock's ETag), so of
two runs taking over at once one wins; on other stores it is a delete and a create, where two
runs taking over the same stale lock within a moment of each other could both start: the
documented rule there is one driver per prefix, as the scheduler starts it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from genbatch.bucket import Bucket
from genbatch.errors import LockedError
from genbatch.store.output_lock import LOCK_NAME

LEASE = 60.0  # seconds a lock stays held without being renewed
WAIT_POLL = 2.0


class BucketLock:
    """``with BucketLock(bucket, wait=False):`` holds the prefix or raises :class:`LockedError`
    (``wait``: polls until it is free). ``lost`` is set when a renewal finds another driver took
    the lock over (this one was not renewed for a lease: the run should stop)."""

    def __init__(self, bucket: Bucket, *, wait: bool, lease: float | None = None):
        self.bucket, self.wait, self.lease = bucket, wait, LEASE if lease is None else lease
        self.token = uuid.uuid4().hex
        self.tag: str | None = None
        self.lost = False
        self.left: str | None = None  # why the lock was left behind at the end, where it was
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps(
            {
                "token": self.token,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "renewed_at": time.time(),
                "lease_seconds": self.lease,
            }
        ).encode()

    def __enter__(self) -> BucketLock:
        self.bucket.check_reachable()
        while True:
            try:
                self.tag = self.bucket.create(LOCK_NAME, self._body()) or self.bucket.tag(LOCK_NAME)
                break
            except FileExistsError:  # held, or left behind: by whom
                pass
            tag, holder = self._holder()
            if tag is None:
                continue  # released meanwhile
            if self._stale(holder):
                if self._take_over(tag):
                    break
                continue
            if not self.wait:
                raise LockedError(
                    f"another genbatch run is writing to {self.bucket.url} ({_describe(holder)}; it holds "
                    f"{self.bucket.where(LOCK_NAME)}); wait for it to finish, or pass --wait to start when it does"
                )
            time.sleep(WAIT_POLL)
        self._thread = threading.Thread(target=self._renew, name="genbatch-bucket-lock", daemon=True)
        self._thread.start()
        return self

    def _holder(self) -> tuple[str | None, dict[str, Any]]:
        tag = self.bucket.tag(LOCK_NAME)
        if tag is None:
            return None, {}
        try:
            holder = json.loads(self.bucket.get(LOCK_NAME))
        except FileNotFoundError:
            return None, {}
        except ValueError:
            holder = {}  # not a lock genbatch wrote: stale as soon as its lease is out
        return tag, holder if isinstance(holder, dict) else {}

    def _stale(self, holder: dict[str, Any]) -> bool:
        renewed = holder.get("renewed_at")
        lease = holder.get("lease_seconds", self.lease)
        if not isinstance(renewed, (int, float)) or not isinstance(lease, (int, float)):
            return True
        if time.time() - renewed > lease:
            return True
        return holder.get("host") == socket.gethostname() and not _running(holder.get("pid"))

    def _take_over(self, tag: str) -> bool:
        """Replace the stale lock of ETag ``tag`` with this run's: True when this run holds it now."""
        if not self.bucket.s3:
            self.bucket.delete(LOCK_NAME)  # and create it again, as any run may
            return False
        try:  # of two runs taking over at once, the write of one fails its If-Match
            written = self.bucket.put(LOCK_NAME, self._body(), IfMatch=tag)
        except OSError:
            return False
        self.tag = written or self.bucket.tag(LOCK_NAME)
        return True

    def _renew(self) -> None:
        while not self._stop.wait(self.lease / 4):
            try:  # the ETag of this PUT's own object: a HEAD after it could see a takeover's
                if self.bucket.s3:
                    written = self.bucket.put(LOCK_NAME, self._body(), IfMatch=self.tag or "")
                else:
                    written = self.bucket.put(LOCK_NAME, self._body())
                self.tag = written or self.bucket.tag(LOCK_NAME)
            except OSError:
                _, holder = self._holder()
                if holder.get("token") != self.token:
                    self.lost = True
                    return

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lost:
            return
        try:
            _, holder = self._holder()
            if holder.get("token") == self.token:
                self.bucket.delete(LOCK_NAME)
        except OSError as err:  # left behind, as a kill leaves it: the next run takes it over
            self.left = (
                f"{self.bucket.where(LOCK_NAME)} was left behind ({type(err).__name__}: {err}); the next run takes "
                f"it over, at once on this machine and after {self.lease:.0f} s on another"
            )


def _running(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(holder: dict[str, Any]) -> str:
    if not holder.get("host"):
        return "a lock object genbatch did not write"
    renewed = holder.get("renewed_at")
    ago = f", renewed {time.time() - renewed:.0f} s ago" if isinstance(renewed, (int, float)) else ""
    return f"process {holder.get('pid')} on {holder.get('host')}{ago}"
