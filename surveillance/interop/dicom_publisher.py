"""Moves AI results from the spool to `ai.results` once they are due.

A result is due when an image header of its study is in the spool (it is published with
that scanner and acquisition), or when it has waited `wait_seconds` (published with the
scanner and acquisition unknown, counted in
`surveillance_dicom_results_without_images_total`; nothing is guessed). Results are keyed
by accession number, as every producer of `ai.results` does, and deleted from the spool
only after the broker acknowledged them (acks=all). A broker outage leaves them in the
spool; the next round retries.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from surveillance.interop.dicom_spool import Due, Spool
from surveillance.interop.dicom_sr import enrich
from surveillance.observe.metrics import record_dicom_result, set_dicom_pending
from surveillance.stream.topics import AI_RESULTS

log = logging.getLogger(__name__)

#: Shortest time from the start of one publishing round to the next. A round per stored
#: object cost 0.85 ms of CPU per SR at 200 SRs/s (its spool query, produce request and
#: commit); waiting for the round's interval batches what arrives meanwhile, and delays a
#: result by at most this much.
ROUND_SECONDS = 0.1


class DicomPublisher:
    def __init__(
        self,
        spool: Spool,
        bootstrap: str,
        wait_seconds: float,
        poll_seconds: float = 1.0,
        topic: str = AI_RESULTS,
        retention_seconds: float = 30 * 86_400,
        round_seconds: float = ROUND_SECONDS,
    ) -> None:
        self._spool = spool
        self._bootstrap = bootstrap
        self._wait = wait_seconds
        self._poll = poll_seconds
        self._topic = topic
        self._retention = retention_seconds
        self._round = round_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Any = None

    def wake(self) -> None:
        """Something new is in the spool: look now rather than at the next poll."""
        self._wake.set()

    def start(self) -> DicomPublisher:
        self._thread = threading.Thread(target=self._run, name="dicom-publisher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None

    def publish_due(self, now: float | None = None) -> int:
        """One round: publish every due result; returns how many were published."""
        total = 0
        while True:
            due = self._spool.due(time.time() if now is None else now, self._wait)
            if not due:
                break
            self._send(due)
            total += len(due)
        set_dicom_pending(self._spool.pending_count())
        return total

    def _run(self) -> None:
        last_prune = 0.0
        last_round = 0.0
        while not self._stop.is_set():
            self._wake.wait(self._poll)
            # Objects stored while the last round ran wait for the rest of its interval,
            # and go in one round (one produce request per partition, one spool commit).
            self._stop.wait(last_round + self._round - time.monotonic())
            self._wake.clear()
            last_round = time.monotonic()
            try:
                self.publish_due()
                if time.time() - last_prune > 3600:
                    self._spool.prune(time.time() - self._retention)
                    last_prune = time.time()
            except Exception as exc:  # the broker or disk is down: keep the spool, retry
                log.warning("publishing DICOM results failed (%s); retrying",
                            type(exc).__name__)
                self._drop_producer()
                self._stop.wait(min(5.0, self._poll * 5))

    def _send(self, due: list[Due]) -> None:
        producer = self._get_producer()
        futures = []
        for item in due:
            result = enrich(item.result, item.header)
            futures.append(producer.send(
                self._topic,
                key=result.accession_number.encode(),
                value=result.model_dump_json().encode(),
            ))
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)
        self._spool.mark_published((d.result.event_id for d in due), time.time())
        for item in due:
            record_dicom_result(item.result.tool_id, with_images=item.header is not None)

    def _get_producer(self) -> Any:
        from kafka import KafkaProducer

        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=self._bootstrap,
                acks="all",
                # Every round ends with flush(), which sends at once: until then a long
                # linger keeps appending to one batch per partition instead of waking the
                # sender thread for each record (half a millisecond of CPU per record).
                linger_ms=1000,
                batch_size=256 * 1024,  # well under the broker's 1 MiB message limit
                max_block_ms=10_000,
                request_timeout_ms=10_000,
            )
        return self._producer

    def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception as exc:  # closing a broken client must not mask the real error
                log.debug("closing a failed producer: %s", exc)
