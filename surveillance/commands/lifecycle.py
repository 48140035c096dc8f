"""`surveillance tool ...`: a tool version's lifecycle, every change in the audit trail."""

from __future__ import annotations

from typing import Annotated

import typer

from surveillance.commands.common import db_url, fail, load_settings

tool_app = typer.Typer(no_args_is_help=True, help="Tool-version lifecycle (audit trail).")
Who = Annotated[str, typer.Option("--who", help="the person making the change")]
Why = Annotated[str, typer.Option("--why", help="the reason, for the audit trail")]


@tool_app.command("register")
def tool_register(tool: str, version: str, who: Who, why: Why) -> None:
    """A new version enters the lifecycle in shadow."""
    from surveillance.clinical.lifecycle import register

    t = register(load_settings().state_dir, tool, version, who, why)
    typer.echo(f"{tool} {version}: {t}")


@tool_app.command("promote")
def tool_promote(
    tool: str, version: str, who: Who, why: Why,
    to: Annotated[str, typer.Option(help="validating or live")] = "validating",
) -> None:
    """shadow -> validating -> live. Going live runs the validation on stored cases first."""
    from datetime import UTC, datetime

    from surveillance.clinical.baselines import load_registry
    from surveillance.clinical.lifecycle import ToolState, promote
    from surveillance.clinical.validation import validate as judge

    settings = load_settings()
    try:
        target = ToolState(to)
    except ValueError:
        fail(f"--to must be one of {', '.join(s.value for s in ToolState)}")
        return
    validation = None
    if target is ToolState.LIVE:
        import psycopg

        from surveillance.store.queries import cases_of_version

        registry = load_registry(settings.baselines_file)
        if tool not in registry:
            fail(f"tool {tool!r} is not in the baseline registry")
        with psycopg.connect(db_url()) as conn:
            cases = cases_of_version(conn, tool, version)
        validation = judge(registry[tool], cases, version=version)
    t = promote(settings.state_dir, tool, version, target, who, why, validation,
                datetime.now(UTC))
    typer.echo(f"{tool} {version}: {t}")


@tool_app.command("suspend")
def tool_suspend(tool: str, version: str, who: Who, why: Why) -> None:
    from surveillance.clinical.lifecycle import suspend

    typer.echo(str(suspend(load_settings().state_dir, tool, version, who, why)))


@tool_app.command("retire")
def tool_retire(tool: str, version: str, who: Who, why: Why) -> None:
    from surveillance.clinical.lifecycle import retire

    typer.echo(str(retire(load_settings().state_dir, tool, version, who, why)))


@tool_app.command("history")
def tool_history(tool: str | None = None, version: str | None = None) -> None:
    """The audit trail: every transition with who, when and why."""
    from surveillance.clinical.lifecycle import history

    settings = load_settings()
    transitions = history(settings.state_dir, tool, version)
    for t in transitions:
        typer.echo(str(t))
    if not transitions:  # say so: an empty output looked like a broken command
        which = " ".join(x for x in (tool, version) if x) or "any tool"
        typer.echo(f"no lifecycle changes recorded for {which} in {settings.state_dir} "
                   "(`surveillance tool register` starts one)", err=True)
