"""A Kafka-protocol broker that only speaks TLS: the embedded Tansu broker behind stunnel.

Tansu 0.6 has `--cert`/`--key` options, but its command line refuses them together
("the argument '--cert' cannot be used with '--key'") and with `--cert` alone it still
serves plaintext, so the TLS is stunnel's (Debian `stunnel4`, a `make test` system
dependency). Tansu listens on a loopback port and advertises the stunnel port: the only
address any client learns from the metadata is the TLS one, so every connection a client
makes (bootstrap, partition leaders, group coordinator) must be TLS. The certificates are
made per run: a throwaway CA and a server certificate for 127.0.0.1 signed by it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from surveillance.embedded.broker import _broker_binary
from surveillance.embedded.ports import PortTaken, free_port, start_with_port_retry
from surveillance.settings import KafkaSettings

STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) as PEM files in `folder`."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("surveillance test CA"))
        .issuer_name(_name("surveillance test CA")).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


class TlsBroker:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.plain_port, self.tls_port = free_port(), free_port()
        self.bootstrap = f"127.0.0.1:{self.tls_port}"
        self.cluster_id = f"surveillance-tls-{uuid.uuid4().hex}"
        self.cafile, self._cert, self._key = make_certificates(folder / "tls")
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(bootstrap=self.bootstrap, security_protocol="SSL",
                             ssl_cafile=self.cafile)

    @property
    def env(self) -> dict[str, str]:
        """What an operator sets for a broker that requires TLS."""
        return {"SURVEILLANCE_KAFKA__BOOTSTRAP": self.bootstrap,
                "SURVEILLANCE_KAFKA__SECURITY_PROTOCOL": "SSL",
                "SURVEILLANCE_KAFKA__SSL_CAFILE": str(self.cafile)}

    def start(self, timeout: float = 20.0) -> TlsBroker:
        """Both processes on the ports picked; on two others if one of them was taken
        first (a process exits, or another broker answers: never taken for ours)."""
        return start_with_port_retry(
            "the TLS broker", lambda: self._start(timeout), self.stop,
            lambda: f"port {self.plain_port} or {self.tls_port}", self._repick)

    def _repick(self) -> None:
        self.plain_port, self.tls_port = free_port(), free_port()
        self.bootstrap = f"127.0.0.1:{self.tls_port}"

    def _start(self, timeout: float) -> TlsBroker:
        assert STUNNEL is not None
        conf = self.folder / "stunnel.conf"
        conf.write_text(
            "foreground = yes\npid =\n"
            f"output = {self.folder / 'stunnel.log'}\n"
            f"[kafka]\naccept = 127.0.0.1:{self.tls_port}\n"
            f"connect = 127.0.0.1:{self.plain_port}\n"
            f"cert = {self._cert}\nkey = {self._key}\n"
        )
        self._log = self.folder / "processes.log"
        self._logged = self._log.stat().st_size if self._log.exists() else 0  # this start's
        log = open(self._log, "ab")  # noqa: SIM115 - children hold it
        self._procs.append(subprocess.Popen([STUNNEL, str(conf)], stdout=log, stderr=log,
                                            start_new_session=True))
        self._procs.append(subprocess.Popen(
            [_broker_binary(), "broker",
             "--listener-url", f"tcp://127.0.0.1:{self.plain_port}",
             "--advertised-listener-url", f"tcp://127.0.0.1:{self.tls_port}",
             "--storage-engine", "memory://tansu/", "--cluster-id", self.cluster_id],
            stdout=log, stderr=log, start_new_session=True))
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        from surveillance.kafka_clients import client_options

        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            if self._bind_failed():
                raise PortTaken
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap,
                                         request_timeout_ms=2000, bootstrap_timeout_ms=2000,
                                         **client_options(self.kafka))
                try:
                    if admin.describe_cluster()["cluster_id"] != self.cluster_id:
                        raise PortTaken  # another broker answers on a port
                    return
                finally:
                    admin.close()
            except (OSError, KafkaError) as exc:
                last = exc
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"TLS broker not ready within {timeout}s: {last}")

    def _bind_failed(self) -> bool:
        """Whether stunnel or Tansu logged that its port is in use (neither need exit:
        stunnel goes on without the service, Tansu's listener thread panics)."""
        with open(self._log, "rb") as f:
            f.seek(self._logged)
            logged = f.read()
        return b"Address already in use" in logged or b"AddrInUse" in logged

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs.clear()

    def __enter__(self) -> TlsBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
