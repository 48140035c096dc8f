"""Loopback Prometheus + Alertmanager + webhook receiver for the end-to-end alert test.

Everything binds 127.0.0.1 on free ports and lives under the test's tmp directory. The
configs are derived from the shipped ones in deploy/ (see `prometheus_rules`,
`alertmanager_config`) so the test exercises the rules and routing operators deploy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from surveillance.embedded.broker import free_port

REPO = Path(__file__).resolve().parent.parent
RULES_DIR = REPO / "deploy" / "prometheus" / "rules"
ALERTMANAGER_YML = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
PROMETHEUS_BIN = "/usr/bin/prometheus"
ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"
#: The job name the shipped rules select (`up{job="surveillance-worker"}`).
WORKER_JOB = "surveillance-worker"


class MissingBinaryError(RuntimeError):
    """A Prometheus/Alertmanager binary this test needs is not installed."""


def require_binary(path: str, package: str) -> str:
    if shutil.which(path) is None:
        raise MissingBinaryError(
            f"{path} not found: install the Debian package `{package}` "
            f"(apt-get install {package}) to run the end-to-end alert test"
        )
    return path


# -- webhook receiver ------------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """One alert inside one webhook POST, with the monotonic time it was received."""

    received: float
    status: str
    labels: dict[str, str]
    receiver: str


class WebhookReceiver:
    """Alertmanager's webhook target: records every alert of every POST it receives."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._notifications: list[Notification] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                receiver._record(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return  # keep pytest output to what the test prints

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/alerts"

    def _record(self, body: dict[str, Any]) -> None:
        now = time.monotonic()
        with self._lock:
            for alert in body.get("alerts", []):
                self._notifications.append(
                    Notification(now, alert["status"], dict(alert["labels"]), body["receiver"])
                )

    def notifications(self) -> list[Notification]:
        with self._lock:
            return list(self._notifications)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# -- configs derived from deploy/ -----------------------------------------------------------


def prometheus_rules(into: Path) -> list[Path]:
    """Copy every shipped rule file into `into` with each rule's `for:` set to 0s.

    Production `for:` durations are 5-30 minutes (a verdict must persist before anyone is
    paged); a loopback test cannot wait that long. Expressions, labels and annotations are
    the shipped ones, byte for byte after YAML round-tripping.
    """
    into.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sorted(RULES_DIR.glob("*.yml")):
        doc = yaml.safe_load(source.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = "0s"
        target = into / source.name
        target.write_text(yaml.safe_dump(doc, sort_keys=False))
        written.append(target)
    return written


def shipped_rule_groups() -> dict[str, int]:
    """Rule group name -> number of rules, as shipped in deploy/prometheus/rules."""
    groups: dict[str, int] = {}
    for source in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(source.read_text())["groups"]:
            groups[group["name"]] = len(group["rules"])
    return groups


def prometheus_config(
    path: Path, rules: list[Path], worker_port: int, alertmanager_port: int
) -> Path:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(r) for r in rules],
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}
            ]
        },
        "scrape_configs": [
            {
                "job_name": WORKER_JOB,
                "metrics_path": "/metrics",
                "scrape_interval": "1s",
                "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}],
            }
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _fast_routes(route: dict[str, Any]) -> None:
    for key in ("group_wait", "group_interval"):
        if key in route:
            route[key] = "1s"
    for child in route.get("routes", []):
        _fast_routes(child)


def alertmanager_config(path: Path, webhook_url: str) -> Path:
    """The shipped Alertmanager config with every receiver replaced by the local webhook.

    The routing tree, grouping and inhibition rules are kept; group_wait/group_interval
    drop to 1s. The global SMTP settings go: no e-mail receiver is left, and their
    password file (/run/secrets/...) exists only in the deployment.
    """
    doc = yaml.safe_load(ALERTMANAGER_YML.read_text())
    doc["global"] = {k: v for k, v in doc["global"].items() if not k.startswith("smtp_")}
    _fast_routes(doc["route"])
    doc["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}
        for r in doc["receivers"]
    ]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# -- processes -----------------------------------------------------------------------------


class Service:
    """A Prometheus or Alertmanager child process on a free loopback port."""

    def __init__(self, name: str, argv: list[str], port: int, log_path: Path) -> None:
        self.name = name
        self.port = port
        self.log_path = log_path
        self._argv = argv
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Service:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                self._argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited at start (code {self.proc.returncode}):\n"
                    f"{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready within {timeout:.0f}s:\n{self.log_tail()}")

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def prometheus_service(workdir: Path, worker_port: int, alertmanager_port: int) -> Service:
    binary = require_binary(PROMETHEUS_BIN, "prometheus")
    port = free_port()
    rules = prometheus_rules(workdir / "rules")
    config = prometheus_config(workdir / "prometheus.yml", rules, worker_port, alertmanager_port)
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return Service("prometheus", argv, port, workdir / "prometheus.log")


def alertmanager_service(workdir: Path, webhook_url: str) -> Service:
    binary = require_binary(ALERTMANAGER_BIN, "prometheus-alertmanager")
    port = free_port()
    config = alertmanager_config(workdir / "alertmanager.yml", webhook_url)
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={workdir / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # a single instance: no gossip port
    ]
    return Service("alertmanager", argv, port, workdir / "alertmanager.log")


# -- watching the worker's gauges ----------------------------------------------------------


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    """(sample name, labels, value) of every sample a /metrics page serves."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


#: Gauges whose value 1 is a performance verdict the alert rules turn into alerts.
VERDICT_GAUGES = ("surveillance_below_baseline", "surveillance_cusum_signal")


class VerdictWatch:
    """Polls the worker's /metrics; remembers when a verdict gauge of `tool` first read 1."""

    def __init__(self, metrics_url: str, tool: str, period: float = 0.25) -> None:
        self._url = metrics_url
        self._tool = tool
        self._period = period
        self._stop = threading.Event()
        self.first_verdict: float | None = None
        self.first_labels: dict[str, str] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and self.first_verdict is None:
            try:
                samples = scrape(self._url)
            except (urllib.error.URLError, OSError):
                samples = []
            for name, labels, value in samples:
                if name in VERDICT_GAUGES and labels.get("tool") == self._tool and value == 1:
                    self.first_verdict = time.monotonic()
                    self.first_labels = {"gauge": name, **labels}
                    break
            self._stop.wait(self._period)

    def start(self) -> VerdictWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
