"""TLS and SASL options of every Kafka client the service builds, from `KafkaSettings`.

One place turns `SURVEILLANCE_KAFKA__SECURITY_PROTOCOL`, `__SASL_*` and `__SSL_*` into the
keyword arguments of each client library, so no client can be left on plaintext by
omission: kafka-python (topic admin, producers, the intake publisher, the demo's reader),
aiokafka (store writer, shadow process) and Faust (the worker's `broker_credentials`).
"""

from __future__ import annotations

import ssl
from typing import Any

from surveillance.errors import SurveillanceError
from surveillance.settings import KafkaSettings, get_settings


class KafkaSecurityError(SurveillanceError):
    """The TLS files in the settings cannot be read or used."""


def _settings(kafka: KafkaSettings | None) -> KafkaSettings:
    return kafka if kafka is not None else get_settings().kafka


def uses_tls(kafka: KafkaSettings) -> bool:
    return kafka.security_protocol in ("SSL", "SASL_SSL")


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """Verifying client context: the configured CA (else the system's), hostname checked
    unless turned off, the client certificate when mutual TLS is configured."""
    try:
        context = ssl.create_default_context(
            cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None
        )
        context.check_hostname = kafka.ssl_check_hostname
        if kafka.ssl_certfile is not None and kafka.ssl_keyfile is not None:
            context.load_cert_chain(str(kafka.ssl_certfile), str(kafka.ssl_keyfile))
    except (OSError, ssl.SSLError) as exc:
        raise KafkaSecurityError(
            f"cannot use the Kafka TLS files ({exc}): check SURVEILLANCE_KAFKA__SSL_CAFILE, "
            "__SSL_CERTFILE and __SSL_KEYFILE"
        ) from exc
    return context


def _sasl(kafka: KafkaSettings) -> dict[str, Any]:
    if not kafka.security_protocol.startswith("SASL_"):
        return {}
    return {
        "sasl_mechanism": kafka.sasl_mechanism,
        "sasl_plain_username": kafka.sasl_username,
        "sasl_plain_password": kafka.sasl_password.get_secret_value(),
    }


def client_options(kafka: KafkaSettings | None = None) -> dict[str, Any]:
    """Keyword arguments shared by kafka-python (`KafkaProducer`, `KafkaConsumer`,
    `KafkaAdminClient`) and aiokafka (`AIOKafkaProducer`, `AIOKafkaConsumer`): both take
    the same names for TLS and SASL."""
    k = _settings(kafka)
    options: dict[str, Any] = {"security_protocol": k.security_protocol, **_sasl(k)}
    if uses_tls(k):
        options["ssl_context"] = ssl_context(k)
    return options


def faust_options(kafka: KafkaSettings | None = None) -> dict[str, Any]:
    """`broker_credentials` for `faust.App` (nothing for plaintext)."""
    import faust

    k = _settings(kafka)
    context = ssl_context(k) if uses_tls(k) else None
    if k.security_protocol.startswith("SASL_"):
        credentials: Any = faust.SASLCredentials(
            username=k.sasl_username,
            password=k.sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=k.sasl_mechanism,
        )
    elif context is not None:
        credentials = faust.SSLCredentials(context)
    else:
        return {}
    return {"broker_credentials": credentials}
