"""`surveillance dicom listen`: spool, publisher, C-STORE SCP and STOW-RS.

`DicomService` starts everything but the STOW-RS web server (the CLI runs it in the main
thread with uvicorn; tests and benchmarks run it in a thread), and stops it in reverse.

With `processes` > 1, that many processes accept C-STORE on the one port (SO_REUSEPORT:
the kernel spreads associations across them), so that decoding and parsing use more than
one core (they hold the GIL). They share the spool file (SQLite in WAL mode serializes
their commits), so "publish once the study's images arrived", "never publish a result
twice" and the wait hold across them exactly as in one process; only this process
publishes, polling the spool every `poll_seconds` for what the others stored. The other
processes' object counters are not on this process's `/metrics`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from surveillance.clinical.baselines import ToolBaseline
from surveillance.intake.publisher import KafkaPublisher
from surveillance.interop.dicom_errors import DicomError
from surveillance.interop.dicom_publisher import DicomPublisher
from surveillance.interop.dicom_receiver import Receiver
from surveillance.interop.dicom_scp import site_of, start_scp
from surveillance.interop.dicom_spool import Spool
from surveillance.stream.topics import AI_RESULTS, dlq


@dataclass
class DicomConfig:
    bootstrap: str
    spool_path: Path
    ae_title: str = "SURVEILLANCE"
    host: str = "127.0.0.1"
    port: int = 11112
    allowed_calling_aets: Sequence[str] = ()
    sites: Mapping[str, str] = field(default_factory=dict)
    default_site: str = "default"
    wait_for_images_seconds: float = 600.0
    timezone: str = "UTC"
    spool_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    poll_seconds: float = 1.0
    #: Processes accepting C-STORE on the port (this one included).
    processes: int = 1
    #: Where results and dead letters go (tests and benchmarks use their own topics).
    topic: str = AI_RESULTS
    #: `stream.earliest_event_date` (None: its default): an SR dated before it, or after
    #: the clock, is refused (0xA900) as the worker's ingest would dead-letter its results.
    earliest: date | None = None


class DicomService:
    def __init__(self, config: DicomConfig, registry: Mapping[str, ToolBaseline]) -> None:
        try:
            tz = ZoneInfo(config.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise DicomError(
                f"unknown time zone {config.timezone!r}: set SURVEILLANCE_DICOM__TIMEZONE to "
                "an IANA name such as Europe/Paris"
            ) from exc
        self.config = config
        self.spool = Spool(config.spool_path, config.spool_synchronous)
        # What the other processes store wakes nobody here: poll often (a cheap query).
        poll = config.poll_seconds if config.processes == 1 else min(config.poll_seconds, 0.2)
        self.publisher = DicomPublisher(
            self.spool, config.bootstrap, config.wait_for_images_seconds, poll,
            topic=config.topic,
        )
        self.dead_letters = KafkaPublisher(config.bootstrap, dlq(config.topic))
        self.receiver = Receiver(registry, self.spool, self.dead_letters, tz,
                                 on_stored=self.publisher.wake, earliest=config.earliest)
        self._registry = registry
        self._server: Any = None
        self._others: list[Any] = []
        self._stop_others: Any = None

    def start(self) -> DicomService:
        self.publisher.start()
        shared = self.config.processes > 1
        try:
            self._server = start_scp(
                self.receiver, self.config.host, self.config.port, self.config.ae_title,
                self.config.allowed_calling_aets,
                lambda ae: site_of(ae, self.config.sites, self.config.default_site),
                shared_port=shared,
            )
        except OSError as exc:
            self.publisher.stop()
            raise DicomError(
                f"cannot listen for C-STORE on {self.config.host}:{self.config.port} "
                f"({exc.strerror}): set SURVEILLANCE_DICOM__PORT to a free port"
            ) from exc
        if shared:
            self._start_others()
        return self

    def _start_others(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop_others = context.Event()
        for _ in range(self.config.processes - 1):
            ready = context.Event()
            process = context.Process(
                target=serve_c_store, name="dicom-scp",
                args=(self.config, self._registry, self.port, os.getpid(),
                      self._stop_others, ready),
                daemon=True,
            )
            process.start()
            self._others.append(process)
            if not ready.wait(120) or not process.is_alive():
                self.stop()
                raise DicomError(f"a C-STORE process did not start (exit code "
                                 f"{process.exitcode}); see its log above")

    @property
    def port(self) -> int:
        """The SCP's bound port (useful when configured as 0)."""
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._stop_others is not None:
            self._stop_others.set()
        for process in self._others:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        self._others = []
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.publisher.stop()
        self.dead_letters.close()
        self.spool.close()


def serve_c_store(
    config: DicomConfig,
    registry: Mapping[str, ToolBaseline],
    port: int,
    parent: int,
    stop: Any,
    ready: Any,
) -> None:
    """One more C-STORE process on the shared port: receive into the shared spool (the
    first process publishes); ends when told to or when its parent is gone."""
    logging.basicConfig(level=logging.WARNING)
    spool = Spool(config.spool_path, config.spool_synchronous)
    dead_letters = KafkaPublisher(config.bootstrap, dlq(config.topic))
    receiver = Receiver(registry, spool, dead_letters, ZoneInfo(config.timezone),
                        earliest=config.earliest)
    server = start_scp(receiver, config.host, port, config.ae_title,
                       config.allowed_calling_aets,
                       lambda ae: site_of(ae, config.sites, config.default_site),
                       shared_port=True)
    ready.set()
    try:
        while not stop.wait(1.0) and os.getppid() == parent:
            pass
    finally:
        server.shutdown()
        dead_letters.close()
        spool.close()
