"""What an on-call engineer starting the receivers can get wrong, each ending in one line and
exit code 2: a port another process holds (uvicorn printed its own error and exited 3; the
MLLP listener said only "address already in use"), a token setting that is not JSON (a
pydantic-settings traceback), and a report time `hl7 parse` used to print as fine. And
`tool history` with nothing recorded, which printed nothing at all."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from surveillance.cli import app
from surveillance.embedded import EmbeddedBroker
from tests.hl7_samples import msg, obr

runner = CliRunner()


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


def test_fhir_serve_on_a_taken_port(taken_port: int,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURVEILLANCE_INTAKE_API_TOKENS", '{"ris": "tok"}')
    result = runner.invoke(app, ["fhir", "serve", "--port", str(taken_port)])
    assert result.exit_code == 2
    assert one_error_line(result.output) == (
        f"error: cannot serve FHIR (--port) on 127.0.0.1:{taken_port} (Address already in "
        "use): stop what holds the port or choose another")


@pytest.mark.parametrize("command", [["fhir", "serve", "--port", "1"],
                                     ["intake", "--port", "1"]])
def test_a_token_setting_that_is_not_json(command: list[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURVEILLANCE_INTAKE_API_TOKENS", "ris:abc")
    result = runner.invoke(app, command)
    assert result.exit_code == 2
    assert one_error_line(result.output) == (
        "error: SURVEILLANCE_INTAKE_API_TOKENS is not valid JSON: write it as JSON, e.g. "
        "SURVEILLANCE_INTAKE_API_TOKENS='{\"ris\": \"<token>\"}'")


@pytest.mark.integration
def test_hl7_listen_on_a_taken_port(taken_port: int, broker: EmbeddedBroker) -> None:
    result = runner.invoke(app, ["hl7", "listen", "--port", str(taken_port),
                                 "--bootstrap", broker.bootstrap])
    assert result.exit_code == 2
    assert one_error_line(result.output) == (
        f"error: cannot listen for MLLP on 127.0.0.1:{taken_port} (Address already in use): "
        "stop what holds the port or choose another --port")


def test_hl7_parse_names_a_report_time_the_worker_would_refuse(tmp_path: Path) -> None:
    path = tmp_path / "old.hl7"
    path.write_bytes(msg("MSH|^~\\&|RIS|NORTH|||20260815||ORU^R01|D1|P|2.3",
                         obr(f1="1", f3="ACC-OLD", f22="00010101", f25="F"),
                         "OBX|1|TX|||No hemorrhage.||||||F"))
    result = runner.invoke(app, ["hl7", "parse", str(path)])
    assert result.exit_code == 2
    assert one_error_line(result.output) == (
        "old.hl7#1: rejected (AE 102): OBR group 1: the report time (OBR-22, OBR-7, OBX-14, "
        "MSH-7) is before 1980-01-01 (stream.earliest_event_date)")


def test_dicom_listen_with_its_stow_port_taken(taken_port: int, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from surveillance.settings import get_settings

    monkeypatch.setenv("SURVEILLANCE_DICOM__STOW_PORT", str(taken_port))
    monkeypatch.setenv("SURVEILLANCE_DICOM__PORT", "0")
    monkeypatch.setenv("SURVEILLANCE_STATE_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["dicom", "listen"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert one_error_line(result.output) == (
        f"error: cannot serve STOW-RS (SURVEILLANCE_DICOM__STOW_PORT) on 127.0.0.1:"
        f"{taken_port} (Address already in use): stop what holds the port or choose another")


def test_tool_history_with_nothing_recorded_says_so(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from surveillance.settings import get_settings

    monkeypatch.setenv("SURVEILLANCE_STATE_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["tool", "history", "--tool", "ptx-triage"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0
    assert result.output == (f"no lifecycle changes recorded for ptx-triage in {tmp_path} "
                             "(`surveillance tool register` starts one)\n")
