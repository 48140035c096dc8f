"""deploy/: every file parses, every referenced file exists, the tools accept the configs.

Needs `promtool` and `amtool` on PATH (Debian packages `prometheus` and
`prometheus-alertmanager`); the tests fail, not skip, without them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from surveillance.settings import Settings
from surveillance.store.migrate import TESTED_POSTGRES_MAJOR, TESTED_TIMESCALEDB

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
REQUIRED_ENV = {
    "SURVEILLANCE_KAFKA__BOOTSTRAP",
    "SURVEILLANCE_DATABASE__URL",
    "SURVEILLANCE_PSEUDONYM_KEY",
}
YAML_FILES = sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: install the Debian package `{package}`")
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _k8s(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if d]


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert documents
    assert all(isinstance(d, dict) for d in documents)


def test_compose_has_the_whole_stack() -> None:
    services = _compose()["services"]
    assert set(services) == {
        "kafka",
        "timescaledb",
        "topics",
        "migrate",
        "store-writer",
        "worker-1",
        "worker-2",
        "intake",
        "prometheus",
        "alertmanager",
        "grafana",
    }
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    # KRaft: the broker is its own controller, no ZooKeeper anywhere.
    assert set(kafka["environment"]["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in key for key in kafka["environment"])
    assert not any("zookeeper" in s.get("image", "") for s in services.values())
    assert services["timescaledb"]["image"] == (
        f"timescale/timescaledb:{TESTED_TIMESCALEDB}-pg{TESTED_POSTGRES_MAJOR}"
    )


def test_compose_workers_and_intake_run_the_cli_with_real_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = _compose()["services"]
    for name, command in (
        ("worker-1", ["worker"]),
        ("worker-2", ["worker"]),
        ("intake", ["intake", "--host", "0.0.0.0", "--port", "8080"]),
        ("topics", ["topics", "create"]),
        ("migrate", ["db", "migrate"]),
        ("store-writer", ["store-writer"]),
    ):
        service = services[name]
        assert service["command"] == command, name
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert set(service["environment"]) >= REQUIRED_ENV, name
    environment = services["worker-1"]["environment"]
    # Every SURVEILLANCE_ variable must land in a real settings field.
    for key, value in environment.items():
        monkeypatch.setenv(key, re.sub(r"\$\{(\w+)[^}]*\}", r"<\1>", str(value)))
    settings = Settings()
    assert settings.kafka.bootstrap == "kafka:9092"
    assert settings.kafka.partitions == 4
    assert settings.stream.web_port == 6066
    assert settings.database.url.get_secret_value() == (
        "postgresql://surveillance:<POSTGRES_PASSWORD>@timescaledb:5432/surveillance"
    )
    assert settings.pseudonym_key.get_secret_value() == "<SURVEILLANCE_PSEUDONYM_KEY>"


def test_compose_secrets_are_required_not_defaulted() -> None:
    text = COMPOSE.read_text()
    for variable in ("POSTGRES_PASSWORD", "SURVEILLANCE_PSEUDONYM_KEY", "GRAFANA_ADMIN_PASSWORD"):
        assert f"${{{variable}:?" in text, variable
        assert f"${{{variable}:-" not in text, variable


def test_every_file_compose_mounts_or_builds_exists() -> None:
    services = _compose()["services"]
    checked = 0
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source
                checked += 1
        if "build" in service:
            context = DEPLOY / service["build"]["context"]
            assert (context / service["build"]["dockerfile"]).is_file()
    assert checked == 5


def test_dockerfile_copies_existing_files_and_runs_the_cli() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        for source in line.split()[:-1]:
            assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert 'ENTRYPOINT ["surveillance"]' in text
    assert "EXPOSE 6066" in text
    assert re.search(r"^USER \d+$", text, re.M), "the image must not run as root"


def test_prometheus_config_passes_promtool() -> None:
    result = _run(_tool("promtool", "prometheus"), "check", "config", str(PROMETHEUS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rule files found" in result.stdout


def test_prometheus_scrapes_every_compose_worker_on_the_metrics_port() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    workers = jobs["surveillance-worker"]
    assert workers["metrics_path"] == "/metrics"
    targets = {t for sc in workers["static_configs"] for t in sc["targets"]}
    services = _compose()["services"]
    compose_workers = {s for s, v in services.items() if v.get("command") == ["worker"]}
    assert targets == {f"{name}:6066" for name in compose_workers}
    # The alert rules select this job name.
    rules = " ".join(p.read_text() for p in (DEPLOY / "prometheus" / "rules").glob("*.yml"))
    assert 'job="surveillance-worker"' in rules
    # rule_files are relative to prometheus.yml and the compose mount keeps that layout.
    assert config["rule_files"] == ["rules/*.yml"]
    mounts = _compose()["services"]["prometheus"]["volumes"]
    assert "./prometheus/rules:/etc/prometheus/rules:ro" in mounts
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager:9093"
    ]


def test_grafana_provisioning_points_at_the_mounted_dashboards() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "surveillance.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    mounts = dict(
        v.rsplit(":", 2)[:2] if v.endswith(":ro") else v.split(":", 1)
        for v in _compose()["services"]["grafana"]["volumes"]
    )
    source = next(src for src, target in mounts.items() if target == path)
    assert sorted(p.name for p in (DEPLOY / source).glob("*.json")) == [
        "fleet-overview.json",
        "pipeline-health.json",
        "tool-drilldown.json",
    ]
    datasource = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_alertmanager_config_passes_amtool() -> None:
    result = _run(_tool("amtool", "prometheus-alertmanager"), "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["severity=critical", "tool=ich-triage", "category=performance"], "oncall-pager"),
        (["severity=warning", "tool=ich-triage", "category=drift"], "informatics-chat"),
        (["severity=info", "tool=ptx-triage", "category=drift"], "informatics-email"),
        (
            ["severity=critical", "tool=ich-triage", "category=adverse_event"],
            "governance-email,oncall-pager",
        ),
        (
            ["severity=warning", "tool=lvo-triage", "category=regulatory"],
            "governance-email,informatics-chat",
        ),
        (["severity=warning", "category=pipeline", "topic=ai.results"], "informatics-chat"),
        (["severity=critical", "category=pipeline"], "oncall-pager"),
    ],
)
def test_alertmanager_routes(labels: list[str], receivers: str) -> None:
    amtool = _tool("amtool", "prometheus-alertmanager")
    result = _run(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER}",
        f"--verify.receivers={receivers}",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receivers


def test_alertmanager_groups_by_tool_and_silent_tool_inhibits_drift() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text())
    assert config["route"]["group_by"] == ["tool"]
    inhibit = [
        r for r in config["inhibit_rules"] if r["source_matchers"] == ['alertname="ToolSilent"']
    ]
    assert inhibit == [
        {
            "source_matchers": ['alertname="ToolSilent"'],
            "target_matchers": ['alertname=~"InputDrift|OutputDrift"'],
            "equal": ["tool"],
        }
    ]
    # No secret is written into the file: keys are read from mounted files.
    assert "routing_key:" not in ALERTMANAGER.read_text()
    assert "smtp_auth_password:" not in ALERTMANAGER.read_text()


def test_k8s_worker_deployment() -> None:
    deployment, service, _pdb = _k8s("worker.yaml")
    assert deployment["kind"] == "Deployment"
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    (container,) = spec["template"]["spec"]["containers"]
    assert container["command"] == ["surveillance", "worker"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 6066}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/metrics"
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "6066"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert service["spec"]["ports"][0]["port"] == 6066
    assert _env_names(container) == REQUIRED_ENV | {
        "SURVEILLANCE_KAFKA__PARTITIONS",
        "SURVEILLANCE_KAFKA__REPLICATION_FACTOR",
        "SURVEILLANCE_STREAM__WEB_PORT",
        "SURVEILLANCE_STREAM__WEB_HOST",
        "SURVEILLANCE_STATE_DIR",
        "SURVEILLANCE_DATABASE__METRICS_PORT",
        "SURVEILLANCE_DATABASE__METRICS_HOST",
        "SURVEILLANCE_DATABASE__RETENTION_DAYS",
    }


def test_k8s_store_writer_is_scraped_on_its_metrics_port() -> None:
    deployment, service = _k8s("store-writer.yaml")
    spec = deployment["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    (container,) = spec["template"]["spec"]["containers"]
    assert container["command"] == ["surveillance", "store-writer"]
    env = _env_names(container)
    assert "SURVEILLANCE_DATABASE__URL" in env
    assert "SURVEILLANCE_PSEUDONYM_KEY" not in env  # it never sees raw identifiers
    # The port it serves (settings) is the port declared, annotated and exposed.
    configmap = _k8s("configmap.yaml")[0]["data"]
    port = int(configmap["SURVEILLANCE_DATABASE__METRICS_PORT"])
    assert configmap["SURVEILLANCE_DATABASE__METRICS_HOST"] == "0.0.0.0"
    assert container["ports"] == [{"name": "metrics", "containerPort": port}]
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert container["readinessProbe"]["httpGet"]["path"] == "/metrics"
    assert service["spec"]["ports"][0]["port"] == port
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]


def test_prometheus_scrapes_the_store_writer_where_compose_serves_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """StoreOutage reads surveillance_store_outage, which only the store writer sets."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    targets = jobs["surveillance-store-writer"]["static_configs"][0]["targets"]
    for key, value in _compose()["services"]["store-writer"]["environment"].items():
        monkeypatch.setenv(key, re.sub(r"\$\{(\w+)[^}]*\}", r"<\1>", str(value)))
    settings = Settings()
    assert settings.database.metrics_host == "0.0.0.0"
    assert targets == [f"store-writer:{settings.database.metrics_port}"]
    rules = (DEPLOY / "prometheus" / "rules" / "pipeline.yml").read_text()
    assert "surveillance_store_outage" in rules


def test_k8s_intake_deployment() -> None:
    deployment = _k8s("intake.yaml")[0]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["surveillance", "intake", "--host", "0.0.0.0", "--port", "8080"]
    assert "SURVEILLANCE_PSEUDONYM_KEY" in _env_names(container)


def test_k8s_secret_example_has_exactly_the_keys_the_deployments_read() -> None:
    (secret,) = _k8s("examples/secret.yaml")
    read = set()
    for name in ("worker.yaml", "intake.yaml", "store-writer.yaml"):
        for container in _k8s(name)[0]["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                ref = env["valueFrom"]["secretKeyRef"]
                assert ref["name"] == secret["metadata"]["name"]
                read.add(ref["key"])
    assert read == set(secret["stringData"])


def _env_names(container: dict[str, Any]) -> set[str]:
    """Env names a container gets: its own `env` plus the ConfigMaps it imports."""
    names = {e["name"] for e in container.get("env", [])}
    configmaps = {d["metadata"]["name"]: d for d in _k8s("configmap.yaml")}
    for source in container.get("envFrom", []):
        names |= set(configmaps[source["configMapRef"]["name"]]["data"])
    return names
