"""`surveillance simulate` and `surveillance demo`: seeded events, and the whole service
replaying them on one machine."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer

from surveillance.commands.common import load_settings

#: `--start`: the first simulated day. Without it the stream starts on 2026-07-01, or
#: earlier when `--days` from there would reach today (`simulate.past_start`): the
#: service dead-letters events dated in the future.
Start = Annotated[datetime | None, typer.Option(
    formats=["%Y-%m-%d"], show_default=False,
    help="first simulated day (default 2026-07-01, or earlier so the stream ends before today)",
)]


def start_day(start: datetime | None) -> date | None:
    return None if start is None else start.date()


def simulate(
    out: Annotated[Path, typer.Option(help="write events as JSON lines here")],
    days: int = 90,
    seed: int = 7,
    scenario: str = "all",
    start: Start = None,
) -> None:
    """Write a seeded, reproducible event stream (AI results and reports) to a file."""
    from surveillance.simulate import run_simulate

    run_simulate(out, days, seed, scenario, start_day(start))
    typer.echo(f"wrote {out}")


def demo(
    days: int = 90,
    seed: int = 7,
    scenario: str = "all",
    timeout: Annotated[float, typer.Option(help="seconds to wait for the worker")] = 240.0,
    start: Start = None,
) -> None:
    """Embedded broker + worker + simulator replaying `days` days, then a summary per tool."""
    from surveillance.demo import run_demo
    from surveillance.privacy_key import check_key

    settings = load_settings()
    # The demo's processes run in demo mode (stream.runner): say what that means here too.
    warning = check_key(settings.pseudonym_key.get_secret_value(), "demo")
    if warning:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    ok = run_demo(days=days, seed=seed, scenario=scenario, timeout=timeout,
                  partitions=settings.kafka.partitions, start=start_day(start))
    if not ok:
        raise typer.Exit(1)
