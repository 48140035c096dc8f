"""The shadow re-scoring process: its own consumer group on `cases.adjudicated`.

It reads the same adjudicated cases as everyone else but in the consumer group
`surveillance-shadow`, so the main stream's group never waits for it: if the model is slow,
this process sheds work (counted), it does not lag the stream workers. Offsets are
auto-committed, so delivery is at-most-once: a crash may skip the cases fetched since the
last commit. That is acceptable for a sampled second opinion (the sample stays unbiased,
only slightly smaller); nothing here feeds the agreement counts that must be exact.

Per case of a shadowed tool (`ShadowProcessSettings.tools`, the tools whose finding the
shadow model detects):

- first sight (revision 0) and in the keyed-hash sample (`Sampler`): the normal lane;
- outcome FP or FN (the vendor's call and the report disagree), not sampled: the priority
  lane, which is drained first and has its own capacity;
- each AI event is submitted at most once (a re-emitted revision is not re-scored).

Images are found in the DICOM folder, indexed by the keyed HMAC of each file's
AccessionNumber (the pseudonym ingest gives the accession), so no raw identifier is held.
The ONNX model scores batches on one worker thread behind a bounded queue (`BatchRunner`);
`verdicts.ShadowVerdicts` turns the scores into `surveillance.snapshots` (kind "shadow")
and `surveillance.alerts` ("shadow_discordance", "embedding_drift").
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from surveillance import kafka_clients
from surveillance.contracts import AdjudicatedCase, Alert
from surveillance.observe.metrics import Window, admit_tools, record_shadow, set_shadow_kappa
from surveillance.privacy import pseudonymize
from surveillance.settings import Settings, get_settings
from surveillance.shadow.dicom_source import FolderDicomSource
from surveillance.shadow.errors import ShadowError
from surveillance.shadow.model import ShadowModel
from surveillance.shadow.runner import BatchRunner
from surveillance.shadow.sampler import Reason, Sampler
from surveillance.shadow.scorer import ShadowFailure, ShadowRequest, ShadowScore, ShadowScorer
from surveillance.shadow.settings import ShadowSettings
from surveillance.shadow.verdicts import Message, ShadowVerdicts, ShadowVerdictSettings
from surveillance.stream.topics import ALERTS, CASES_ADJUDICATED, SNAPSHOTS

GROUP_ID = "surveillance-shadow"
#: AI event ids remembered to submit each at most once; older ones age out.
SEEN_IDS = 200_000

log = logging.getLogger(__name__)

Item = tuple[ShadowRequest, datetime]
Outcome = ShadowScore | ShadowFailure


class ShadowProcessError(ShadowError):
    """The shadow process cannot start: broker unreachable or settings missing."""


class ShadowProcessSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tools: tuple[str, ...] = Field(
        default=("ich-triage",), min_length=1, description="tools the shadow model re-scores"
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="latest", description="where a new consumer group starts (demo: earliest)"
    )
    verdicts: ShadowVerdictSettings = ShadowVerdictSettings()
    close_timeout_seconds: float = Field(default=120.0, gt=0)


@dataclass(frozen=True)
class ShadowStats:
    """Counts of one run. After a clean stop:
    offered == shed + scored + image_failures + failed."""

    cases: int  # case events of shadowed tools consumed
    invalid: int  # messages that are not an AdjudicatedCase (skipped)
    offered: int
    shed: int
    scored: int
    scored_sampled: int
    scored_discordant: int
    image_failures: int  # no readable DICOM study for the accession
    failed: int  # in batches whose model call raised
    snapshots: int
    alerts: int


class ShadowCore:
    """Everything but Kafka: sampling, the runner, verdicts; thread-safe counters."""

    def __init__(
        self,
        shadow: ShadowSettings,
        options: ShadowProcessSettings,
        pseudonym_key: bytes,
        emit: Callable[[list[Message]], None],
    ) -> None:
        self._tools = frozenset(options.tools)
        admit_tools(self._tools)
        self._emit = emit
        self._lock = threading.Lock()
        self._verdicts = ShadowVerdicts(options.verdicts)
        self._sampler = Sampler(shadow.sample_fraction, shadow.sample_salt)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._counts = dict.fromkeys(
            ("cases", "invalid", "offered", "shed", "sampled", "discordant", "image_failures",
             "snapshots", "alerts"),
            0,
        )
        source = FolderDicomSource(
            shadow.image_folder, key_fn=partial(pseudonymize, pseudonym_key, "accession")
        )
        model = ShadowModel.load(shadow.model_path, shadow.intra_op_threads)
        self._scorer = ShadowScorer(source, model, shadow.shadow_threshold)
        self._runner: BatchRunner[Item, Outcome] = BatchRunner(
            self._score,
            self._sink,
            queue_size=shadow.queue_size,
            batch_size=shadow.batch_size,
            priority_queue_size=shadow.priority_queue_size,
            name="shadow-scorer",
        )

    def _score(self, items: Sequence[Item]) -> list[Outcome]:
        return self._scorer([request for request, _ in items])

    def _reason(self, case: AdjudicatedCase) -> Reason | None:
        reason = self._sampler.for_case(case)
        if reason is None and case.revision == 0 and self._sampler.in_sample(case.ai_event_id):
            return Reason.SAMPLED
        return reason

    def offer(self, raw: bytes | None) -> None:
        """One `cases.adjudicated` message; returns at once (never waits for the model)."""
        try:
            case = AdjudicatedCase.model_validate_json(raw or b"")
        except ValidationError:
            with self._lock:
                self._counts["invalid"] += 1
            return
        if case.tool_id not in self._tools:
            return
        with self._lock:
            self._counts["cases"] += 1
            self._verdicts.on_case(case)
            reason = self._reason(case)
            if reason is None or case.ai_event_id in self._seen:
                return
            self._seen[case.ai_event_id] = None
            if len(self._seen) > SEEN_IDS:
                self._seen.popitem(last=False)
            self._counts["offered"] += 1
        request = ShadowRequest.from_case(case, reason)
        accepted = self._runner.submit(
            (request, case.inference_date), priority=reason is Reason.DISCORDANT
        )
        if not accepted:
            with self._lock:
                self._counts["shed"] += 1
            record_shadow(case.tool_id, scored=False)

    def _sink(self, items: Sequence[Item], outcomes: Sequence[Outcome]) -> None:
        """On the worker thread: count, update verdicts, hand messages to the event loop."""
        messages: list[Message] = []
        with self._lock:
            tools = set()
            for (_, at), outcome in zip(items, outcomes, strict=True):
                if isinstance(outcome, ShadowFailure):
                    self._counts["image_failures"] += 1
                    continue
                tool = outcome.request.tool_id
                self._counts[outcome.request.reason.value] += 1
                record_shadow(tool, scored=True)
                messages += self._verdicts.on_score(outcome, at)
                tools.add(tool)
            for tool in tools:
                kappa = self._verdicts.kappa_since_start(tool)
                if kappa is not None:
                    set_shadow_kappa(tool, Window.ALL, kappa)
            for message in messages:
                self._counts["alerts" if isinstance(message, Alert) else "snapshots"] += 1
        if messages:
            self._emit(messages)

    def close(self, timeout: float) -> ShadowStats:
        """Finish the queued studies (waits up to `timeout`), then the final counts."""
        runner = self._runner.close(drain=True, timeout=timeout)
        with self._lock:
            c = dict(self._counts)
        return ShadowStats(
            cases=c["cases"],
            invalid=c["invalid"],
            offered=c["offered"],
            shed=c["shed"],
            scored=c["sampled"] + c["discordant"],
            scored_sampled=c["sampled"],
            scored_discordant=c["discordant"],
            image_failures=c["image_failures"],
            failed=runner.failed,
            snapshots=c["snapshots"],
            alerts=c["alerts"],
        )


async def _publish(producer: object, outbox: asyncio.Queue[list[Message] | None]) -> None:
    while (messages := await outbox.get()) is not None:
        for message in messages:
            topic = ALERTS if isinstance(message, Alert) else SNAPSHOTS
            await producer.send(  # type: ignore[attr-defined]
                topic, key=message.tool_id.encode(), value=message.model_dump_json().encode()
            )


async def run_shadow(
    bootstrap: str,
    shadow: ShadowSettings,
    pseudonym_key: bytes,
    stop: asyncio.Event,
    options: ShadowProcessSettings | None = None,
    client_options: Mapping[str, Any] | None = None,
) -> ShadowStats:
    """Consume `cases.adjudicated` as group `surveillance-shadow` until `stop` is set.

    `client_options`: TLS/SASL, by default from `SURVEILLANCE_KAFKA__*`.

    At-most-once (auto-commit): see the module docstring. On stop, the queued studies are
    scored and their snapshots and alerts produced before returning the counts.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.errors import KafkaError

    options = options or ShadowProcessSettings()
    loop = asyncio.get_running_loop()
    outbox: asyncio.Queue[list[Message] | None] = asyncio.Queue()

    def emit(messages: list[Message]) -> None:  # called on the scorer's worker thread
        loop.call_soon_threadsafe(outbox.put_nowait, messages)

    core = ShadowCore(shadow, options, pseudonym_key, emit)
    security = dict(client_options if client_options is not None
                    else kafka_clients.client_options(get_settings().kafka))
    consumer = AIOKafkaConsumer(
        CASES_ADJUDICATED,
        bootstrap_servers=bootstrap,
        group_id=GROUP_ID,
        enable_auto_commit=True,
        auto_commit_interval_ms=1000,
        auto_offset_reset=options.auto_offset_reset,
        **security,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1, **security)
    try:
        await producer.start()
        await consumer.start()
    except KafkaError as exc:
        await asyncio.to_thread(core.close, options.close_timeout_seconds)
        await producer.stop()
        raise ShadowProcessError(
            f"no Kafka broker answers at {bootstrap} ({type(exc).__name__}): start it, or set "
            "SURVEILLANCE_KAFKA__BOOTSTRAP"
        ) from exc
    publisher = asyncio.create_task(_publish(producer, outbox))
    try:
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=200, max_records=1000)
            # No await between the fetch and the offers: an auto-commit never covers a
            # message that was fetched but not yet offered.
            for records in fetched.values():
                for record in records:
                    core.offer(record.value)
    finally:
        await consumer.stop()
        stats = await asyncio.to_thread(core.close, options.close_timeout_seconds)
        outbox.put_nowait(None)
        await publisher
        await producer.stop()
    log.info(
        "shadow process stopped: %d offered, %d scored, %d shed, %d without images, %d failed",
        stats.offered, stats.scored, stats.shed, stats.image_failures, stats.failed,
    )
    return stats


class ShadowEnvironment(BaseSettings):
    """`SURVEILLANCE_SHADOW__MODEL_PATH`, `SURVEILLANCE_SHADOW__IMAGE_FOLDER`, ... and
    `SURVEILLANCE_SHADOW_PROCESS__TOOLS='["ich-triage"]'` etc."""

    model_config = SettingsConfigDict(
        env_prefix="SURVEILLANCE_", env_nested_delimiter="__", extra="ignore"
    )

    shadow: ShadowSettings | None = None
    shadow_process: ShadowProcessSettings = ShadowProcessSettings()


def load_shadow_environment() -> ShadowEnvironment:
    try:
        env = ShadowEnvironment()
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ShadowProcessError(
            f"shadow setting {where}: {first['msg']}; fix SURVEILLANCE_SHADOW__* variables"
        ) from exc
    if env.shadow is None:
        raise ShadowProcessError(
            "shadow re-scoring needs SURVEILLANCE_SHADOW__MODEL_PATH and "
            "SURVEILLANCE_SHADOW__IMAGE_FOLDER"
        )
    return env


def main_shadow(
    settings: Settings,
    shadow: ShadowSettings | None = None,
    options: ShadowProcessSettings | None = None,
) -> None:
    """Run the shadow process until SIGINT/SIGTERM (`surveillance shadow`); logs the counts."""
    from surveillance.stream.topics import Retention, all_topics, create_topics

    if shadow is None or options is None:
        env = load_shadow_environment()
        assert env.shadow is not None
        shadow = shadow or env.shadow
        options = options or env.shadow_process
    security = kafka_clients.client_options(settings.kafka)
    create_topics(
        settings.kafka.bootstrap,
        all_topics(settings.stream.app_id, settings.kafka.partitions,
                   Retention.of(settings.kafka)),
        settings.kafka.replication_factor,
        security,
    )
    key = settings.pseudonym_key.get_secret_value().encode()

    async def _main() -> ShadowStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run_shadow(settings.kafka.bootstrap, shadow, key, stop, options, security)

    asyncio.run(_main())
