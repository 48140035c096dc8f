"""A bounded queue in front of batch inference: the caller never waits for the model.

`submit` takes a lock only long enough to append to a deque; when the queue is full the
item is shed (dropped and counted), so the main stream keeps its pace however slow the
model is. Discordant cases go to a separate priority lane that the worker drains first, so
an overload of routine samples does not shed them. A single worker thread takes up to
`batch_size` queued items at a time (priority first), runs `batch_fn` on them and hands
items and results to `sink`.

Every submitted item ends in exactly one count: shed, processed, or failed (batch_fn or
sink raised; the worker logs the error type and carries on). After `close()`,
``submitted == shed + processed + failed``.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from surveillance.shadow.errors import RunnerClosedError

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunnerStats:
    submitted: int
    shed: int
    processed: int
    failed: int
    queued: int


class BatchRunner(Generic[T, R]):
    def __init__(
        self,
        batch_fn: Callable[[Sequence[T]], Sequence[R]],
        sink: Callable[[Sequence[T], Sequence[R]], None],
        queue_size: int,
        batch_size: int,
        priority_queue_size: int | None = None,
        name: str = "shadow-runner",
    ) -> None:
        if queue_size < 1 or batch_size < 1:
            raise ValueError("queue_size and batch_size must be at least 1")
        self._batch_fn = batch_fn
        self._sink = sink
        self._capacity = queue_size
        self._priority_capacity = priority_queue_size or queue_size
        self._batch_size = batch_size
        self._normal: deque[T] = deque()
        self._priority: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._submitted = self._shed = self._processed = self._failed = 0
        self._worker = threading.Thread(target=self._run, name=name, daemon=True)
        self._worker.start()

    def submit(self, item: T, priority: bool = False) -> bool:
        """Queue `item` for inference; False when it was shed. Never waits for capacity."""
        with self._cond:
            if self._closed:
                raise RunnerClosedError("shadow runner is closed; create a new one to submit")
            self._submitted += 1
            lane, capacity = (
                (self._priority, self._priority_capacity)
                if priority
                else (self._normal, self._capacity)
            )
            if len(lane) >= capacity:
                self._shed += 1
                return False
            lane.append(item)
            self._cond.notify()
            return True

    def stats(self) -> RunnerStats:
        with self._cond:
            return RunnerStats(
                submitted=self._submitted,
                shed=self._shed,
                processed=self._processed,
                failed=self._failed,
                queued=len(self._normal) + len(self._priority),
            )

    def close(self, drain: bool = True, timeout: float | None = None) -> RunnerStats:
        """Stop accepting items; finish the queue (drain) or shed it; wait for the worker."""
        with self._cond:
            self._closed = True
            if not drain:
                self._shed += len(self._normal) + len(self._priority)
                self._normal.clear()
                self._priority.clear()
            self._cond.notify_all()
        self._worker.join(timeout)
        return self.stats()

    def _take(self) -> list[T] | None:
        with self._cond:
            while not self._normal and not self._priority and not self._closed:
                self._cond.wait()
            batch: list[T] = []
            for lane in (self._priority, self._normal):
                while lane and len(batch) < self._batch_size:
                    batch.append(lane.popleft())
            return batch or None

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            try:
                results = self._batch_fn(batch)
                if len(results) != len(batch):
                    raise ValueError(f"batch_fn returned {len(results)} results for {len(batch)}")
                self._sink(batch, results)
            except Exception as exc:  # the worker must outlive any one bad batch
                log.error("shadow batch of %d failed: %s", len(batch), type(exc).__name__)
                with self._cond:
                    self._failed += len(batch)
            else:
                with self._cond:
                    self._processed += len(batch)
