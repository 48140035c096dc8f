"""`surveillance dicom listen` and `surveillance dicom parse FILE...` (a typer sub-app)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from surveillance.commands.demo import Start, start_day

dicom_app = typer.Typer(
    no_args_is_help=True, help="DICOM SR (TID 1500) and image headers: C-STORE SCP, STOW-RS."
)


@dicom_app.command("listen")
def listen() -> None:
    """C-STORE SCP and STOW-RS (`POST /studies`, `/metrics`) publishing to ai.results."""
    import uvicorn

    from surveillance.clinical.baselines import load_registry
    from surveillance.commands.common import load_settings, require_port_free
    from surveillance.interop.dicom_service import DicomConfig, DicomService
    from surveillance.interop.stow import create_app

    # Warnings and errors of the receiver and of pynetdicom (an aborted association, a
    # spool that cannot be written) go to stderr; pynetdicom's own handler drops them.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    settings = load_settings()
    d = settings.dicom
    config = DicomConfig(
        bootstrap=settings.kafka.bootstrap,
        spool_path=d.spool_path or settings.state_dir / "dicom-spool.sqlite",
        ae_title=d.ae_title,
        host=d.host,
        port=d.port,
        allowed_calling_aets=d.allowed_calling_aets,
        sites=d.sites,
        default_site=d.default_site,
        wait_for_images_seconds=d.wait_for_images_seconds,
        timezone=d.timezone,
        spool_synchronous=d.spool_synchronous,
        topic=d.topic,
        processes=d.processes,
        earliest=settings.stream.earliest_event_date,
    )
    # Checked before the SCP starts: uvicorn's own bind error is several lines and exit 3.
    require_port_free(d.stow_host, d.stow_port, "STOW-RS (SURVEILLANCE_DICOM__STOW_PORT)")
    service = DicomService(config, load_registry(settings.baselines_file)).start()
    typer.echo(f"C-STORE SCP {d.ae_title} on {d.host}:{service.port}; STOW-RS on "
               f"http://{d.stow_host}:{d.stow_port}/studies", err=True)
    try:
        app = create_app(service.receiver, d.default_site, service.publisher.wake)
        uvicorn.run(app, host=d.stow_host, port=d.stow_port, log_level="warning")
    finally:
        service.stop()


@dicom_app.command("simulate")
def simulate_dicom(
    out: Annotated[Path, typer.Option(help="directory for the .dcm files")],
    studies: Annotated[int, typer.Option(min=1)] = 100,
    days: Annotated[int, typer.Option(min=1)] = 7,
    seed: int = 7,
    start: Start = None,
) -> None:
    """Write simulated studies as DICOM: a header-only image and a TID 1500 SR each."""
    from surveillance.interop.dicom_demo import write_studies
    from surveillance.simulate import simulate, stream_start

    # Dated so that `dicom listen` takes them: it refuses SRs dated in the future.
    events, _ = simulate(days=days, seed=seed, start=stream_start(days, start_day(start)))
    per_tool = write_studies(events, out, studies)
    typer.echo(f"wrote {studies} studies to {out}: " + ", ".join(
        f"{tool} {n}" for tool, n in sorted(per_tool.items())) + " AI results")


@dicom_app.command("parse")
def parse(
    files: Annotated[list[Path], typer.Argument(help="SR files, and images of their studies")],
    site: Annotated[
        str | None, typer.Option(help="site id (default SURVEILLANCE_DICOM__DEFAULT_SITE)")
    ] = None,
) -> None:
    """Print each SR's AI results as ai.results JSON, identifiers pseudonymized as ingest
    does, one per line; image files given alongside fill in their study's acquisition."""
    from zoneinfo import ZoneInfo

    from surveillance.clinical.baselines import load_registry
    from surveillance.commands.common import load_settings, require_key
    from surveillance.contracts import wire
    from surveillance.interop.dicom_files import read_dicom_files
    from surveillance.stream.ingest import Ingest, Rejected
    from surveillance.stream.topics import AI_RESULTS

    settings = load_settings()
    require_key(settings)  # production refuses the public demo key; demo and test warn
    registry = load_registry(settings.baselines_file)
    tz = ZoneInfo(settings.dicom.timezone)
    read = read_dicom_files(files, registry, site or settings.dicom.default_site, tz)
    problems = [f"{path}: {why}" for path, why in read.problems]
    ingest = Ingest(settings.pseudonym_key.get_secret_value().encode(), (), 1 << 20)
    now = datetime.now(UTC)
    for path, result in read.results:
        accepted = ingest(AI_RESULTS, result.model_dump_json().encode(), now)
        if isinstance(accepted, Rejected):
            problems.append(f"{path}: {accepted.reason}: {accepted.message}")
        elif accepted.ai is not None:
            typer.echo(wire.encode(accepted.ai).decode())
    for line in problems:
        typer.echo(line, err=True)
    if problems:
        raise typer.Exit(2)

