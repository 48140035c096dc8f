"""Who can reach the surveillance pods and pages (deploy/ manifests; static checks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from surveillance.settings import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if d]


def _policies() -> list[dict[str, Any]]:
    return _docs("network-policy.yaml")


def _pod_labels() -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
            for f in ("worker.yaml", "store-writer.yaml", "intake.yaml")
            for d in _docs(f) if d["kind"] == "Deployment"}


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    return policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()


def test_pages_bind_to_loopback_unless_the_deployment_says_otherwise() -> None:
    settings = Settings()
    assert settings.stream.web_host == "127.0.0.1"
    assert settings.database.metrics_host == "127.0.0.1"


def test_every_pod_is_under_a_default_deny_ingress_policy() -> None:
    deny = [p for p in _policies() if p["spec"]["policyTypes"] == ["Ingress"]
            and "ingress" not in p["spec"]]
    assert len(deny) == 1
    for name, labels in _pod_labels().items():
        assert _selects(deny[0], labels), name


def test_only_prometheus_reaches_the_worker_and_store_writer_pages() -> None:
    configmap = _docs("configmap.yaml")[0]["data"]
    ports = {"surveillance-worker": int(configmap["SURVEILLANCE_STREAM__WEB_PORT"]),
             "surveillance-store-writer": int(configmap["SURVEILLANCE_DATABASE__METRICS_PORT"])}
    labels = _pod_labels()
    for name, port in ports.items():
        allowing = [p for p in _policies() if "ingress" in p["spec"]
                    and _selects(p, labels[name])]
        rules = [r for p in allowing for r in p["spec"]["ingress"]]
        assert rules, name
        for rule in rules:
            assert [x["port"] for x in rule["ports"]] == [port]
            (source,) = rule["from"]
            assert source["podSelector"]["matchLabels"] == {
                "app.kubernetes.io/name": "prometheus"}
            assert source["namespaceSelector"]["matchLabels"] == {
                "kubernetes.io/metadata.name": "monitoring"}


def test_compose_publishes_no_worker_or_store_writer_port() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    for name in ("worker-1", "worker-2", "store-writer"):
        assert "ports" not in services[name], name


def test_the_sasl_ssl_override_reaches_every_kafka_client() -> None:
    base = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    override = yaml.safe_load((DEPLOY / "compose.kafka-sasl-ssl.yaml").read_text())["services"]
    clients = {n for n, s in base.items() if "SURVEILLANCE_KAFKA__BOOTSTRAP" in
               (s.get("environment") or {}) and s.get("command") != ["db", "migrate"]}
    assert clients == set(override) - {"kafka"}
    for name in clients:
        env = override[name]["environment"]
        assert env["SURVEILLANCE_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["SURVEILLANCE_KAFKA__SSL_CAFILE"] == "/etc/surveillance/tls/ca.pem"
        assert env["SURVEILLANCE_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"
