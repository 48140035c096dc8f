"""`surveillance dicom listen`: spool, publisher, C-STORE SCP and STOW-RS in one process.

`DicomService` starts everything but the STOW-RS web server (the CLI runs it in the main
thread with uvicorn; tests and benchmarks run it in a thread), and stops it in reverse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
    #: Where results and dead letters go (tests and benchmarks use their own topics).
    topic: str = AI_RESULTS


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
        self.publisher = DicomPublisher(
            self.spool, config.bootstrap, config.wait_for_images_seconds, config.poll_seconds,
            topic=config.topic,
        )
        self.dead_letters = KafkaPublisher(config.bootstrap, dlq(config.topic))
        self.receiver = Receiver(registry, self.spool, self.dead_letters, tz,
                                 on_stored=self.publisher.wake)
        self._server: Any = None

    def start(self) -> DicomService:
        self.publisher.start()
        try:
            self._server = start_scp(
                self.receiver, self.config.host, self.config.port, self.config.ae_title,
                self.config.allowed_calling_aets,
                lambda ae: site_of(ae, self.config.sites, self.config.default_site),
            )
        except OSError as exc:
            self.publisher.stop()
            raise DicomError(
                f"cannot listen for C-STORE on {self.config.host}:{self.config.port} "
                f"({exc.strerror}): set SURVEILLANCE_DICOM__PORT to a free port"
            ) from exc
        return self

    @property
    def port(self) -> int:
        """The SCP's bound port (useful when configured as 0)."""
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.publisher.stop()
        self.dead_letters.close()
        self.spool.close()
