"""`surveillance backfill`: replay the backlog on the input topics at bulk speed.

Imports are inside the command: every other command starts without loading the engine."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from surveillance.commands.common import fail


def backfill(
    files: list[Path] = typer.Argument(  # noqa: B008 (typer's idiom)
        None, help="Files to load onto the input topics first: JSON lines as `simulate` "
        "writes them, or HL7 v2 (batch files or messages); directories are walked."),
    checkpoint: Path = typer.Option(  # noqa: B008
        Path(".backfill-files-checkpoint.json"),
        help="Resume file of the file loads (per file content: how much is on the topics)."),
    hl7_mapping: Path | None = typer.Option(  # noqa: B008
        None, help="Per-facility HL7 mapping YAML, as for `hl7 import`."),
    max_records: int = typer.Option(20_000, help="Records per batch (one commit each)."),
    chunk_records: int = typer.Option(
        2_000, help="Records taken through the engine at a time within a batch, their "
        "outputs sent before the next (another runner process reads them meanwhile)."),
    processes: int = typer.Option(
        2, help="Runner processes: 1 runs the join and the case stage in one; 2 or more split "
        "them (the join's partitions over half, the case stage's over the rest)."),
    tool_split: bool = typer.Option(
        False, help="With 2 processes: share the case stage's tools between both (the join "
        "beside the lighter half) rather than split by stage (not shown faster yet)."),
    idle_seconds: float = typer.Option(
        5.0, help="Stop once caught up and nothing has come for this long."),
    calibration_process: bool = typer.Option(
        True, help="With 2 processes or more: the drift calibrations (Monte Carlo) in a "
        "process of their own beside the runners, not in the case-stage process."),
    crash_after_batch: int = typer.Option(0, hidden=True, help="Crash tests: die after batch N."),
    crash_point: str = typer.Option(
        "flushed", hidden=True, help="Crash tests: 'flushed' (before its commit) or 'committed'."),
) -> None:
    """Replay the backlog through the worker's engine on a plain Kafka client, then exit;
    a worker started afterwards continues from the state and offsets it left. Files
    given are first loaded onto the input topics (re-running loads nothing twice)."""
    from aiokafka.errors import KafkaError
    from pydantic import ValidationError

    from surveillance import kafka_clients
    from surveillance.bulk.backfill import backfill as run_backfill
    from surveillance.bulk.processes import ProcessFailed, Totals
    from surveillance.engine.config import EngineConfig
    from surveillance.privacy_key import KeyRefused, check_key
    from surveillance.settings import get_settings
    from surveillance.store.case_lookup import lookup_of

    try:
        settings = get_settings()
        warning = check_key(settings.pseudonym_key.get_secret_value(), settings.mode)
    except (ValidationError, KeyRefused) as exc:
        fail(str(exc).splitlines()[0])
    if warning:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    if min(max_records, chunk_records, processes) < 1 or idle_seconds < 0:
        fail("--max-records, --chunk-records and --processes must be at least 1, "
             "--idle-seconds at least 0")
    if crash_point not in ("flushed", "committed"):
        fail("--crash-point must be 'flushed' or 'committed'")
    if settings.kafka.probe_log_end:
        from surveillance.embedded import log_end

        log_end.install()
    client = {"bootstrap_servers": settings.kafka.bootstrap,
              **kafka_clients.client_options(settings.kafka)}
    if files:
        from surveillance.bulk.load import load_files

        load_files(files, checkpoint, client, settings, hl7_mapping)
    # No metric is recorded: this process serves no /metrics and exits when done (the
    # progress line is its report); the worker that continues publishes its own.
    shown = [0.0]

    def report(totals: Totals, started: float) -> None:
        now = time.monotonic()
        if now - shown[0] < 2.0:
            return
        shown[0] = now
        elapsed = max(now - started, 1e-9)
        rate = totals.records / elapsed
        eta = totals.behind / rate if rate else float("inf")
        print(f"\r{totals.events} events ({totals.records} records) "
              f"{totals.events / elapsed:,.0f} events/s ({rate:,.0f} records/s), "
              f"{totals.behind} records behind, ETA {eta:,.0f} s",
              end="", file=sys.stderr, flush=True)

    lookup = lookup_of(settings.database.url.get_secret_value())  # for the case horizon
    broker_failed = (f"the broker at {settings.kafka.bootstrap} failed: {{}}; check it is up "
                     "and SURVEILLANCE_KAFKA__BOOTSTRAP, then run the backfill again (it resumes)")
    try:
        done = run_backfill(
            EngineConfig.from_settings(settings, lookup), settings.stream.app_id, client,
            processes, report, max_records=max_records, chunk_records=chunk_records,
            idle_seconds=idle_seconds, calibration_process=calibration_process,
            tool_split=tool_split,
            crash_at=(crash_after_batch, crash_point) if crash_after_batch else None)
    except KafkaError as exc:
        fail(broker_failed.format(exc))
    except ProcessFailed as exc:
        fail(f"a backfill process failed: {exc}; check the broker at "
             f"{settings.kafka.bootstrap}, then run the backfill again (it resumes)")
    totals = done.totals
    busy = max(totals.last_batch - done.started, 1e-9)  # the idle wait left out
    # Every figure "to the last output" covers the `busy` seconds: from the start to the
    # last batch committed or, later, the last outputs of tools a calibration held
    # acknowledged (their drift alerts are part of the backfill's work). A calibration
    # process's CPU after that (none, unless it worked on a job nothing waited for) is
    # given apart, as is its whole.
    helpers = totals.helper_cpu_to_last_batch or totals.helper_cpu
    calibration = "".join(f" + calibration {c:.2f}" for c in helpers)
    tail = "".join(
        f"; the calibration process: {total:.2f} s CPU in all, its last job done "
        f"{max(ended - totals.last_batch, 0.0):.1f} s after the last output"
        for total, ended in zip(totals.helper_cpu, totals.helper_ended, strict=True))
    if totals.helper_cpu and not totals.helper_cpu_to_last_batch:
        tail += " (its CPU to the last output not read: the figure above is to its last job)"
    print(f"\nbackfill done: {totals.events} input events ({totals.records} records) in "
          f"{busy:.1f} s, {totals.events / busy:,.0f} events/s; {done.processes} "
          f"process(es), CPU {sum(totals.busy_cpu) + sum(helpers):.2f} s to the "
          f"last output ({' + '.join(f'{c:.2f}' for c in totals.busy_cpu)}{calibration}; "
          f"each process's CPU from its start to the last output, within those {busy:.1f} s)"
          f"{tail}; {done.cpu:.2f} s "
          f"with the final idle wait; start-up CPU {done.before:.2f} s before the runner "
          f"(imports, settings), {' + '.join(f'{c:.2f}' for c in totals.ready_cpu)} s "
          "from its start to the first batch")
