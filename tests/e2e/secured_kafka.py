"""A second, test-started Kafka broker with a SASL_SSL listener (SCRAM-SHA-512), its TLS
certificates generated at test time with ``cryptography``.

The broker runs from the local stack's cached jars (``foldflow.stack``) on free ports with
its own log dir; its SCRAM user is created when the storage is formatted
(``kafka-storage format --add-scram``). Brokers and controllers talk PLAINTEXT on loopback
among themselves; clients get only the SASL_SSL listener.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from foldflow.settings import Settings
from foldflow.stack import kafka as stack_kafka

USER = "foldflow-app"
PASSWORD = "scram-Pa55-for-tests"
MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class SecuredBroker:
    """Where the SASL_SSL listener is and how to reach it."""

    bootstrap: str
    ca: Path
    logs: Path

    def env(self, *, password: str = PASSWORD) -> dict[str, str]:
        """The FOLDFLOW_ settings a client needs for this broker."""
        return {
            "FOLDFLOW_KAFKA_BOOTSTRAP": self.bootstrap,
            "FOLDFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "FOLDFLOW_KAFKA_SASL_MECHANISM": MECHANISM,
            "FOLDFLOW_KAFKA_SASL_USERNAME": USER,
            "FOLDFLOW_KAFKA_SASL_PASSWORD": password,
            "FOLDFLOW_KAFKA_SSL_CA_LOCATION": str(self.ca),
        }

    def settings(self, *, password: str = PASSWORD) -> Settings:
        """Client settings for this broker (no ``.env``)."""
        values = {k.removeprefix("FOLDFLOW_").lower(): v for k, v in self.env(
            password=password).items()}  # fmt: skip
        return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free right now on loopback."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def write_certificates(directory: Path) -> tuple[Path, Path]:
    """A CA and a broker certificate for 127.0.0.1/localhost signed by it.

    Returns the CA certificate (PEM) and the broker's PEM key store: its unencrypted
    PKCS#8 key followed by its certificate chain.
    """
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("foldflow test CA"))
        .issuer_name(_name("foldflow test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(pem))
    store = directory / "broker-keystore.pem"
    store.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + cert.public_bytes(pem)
        + ca_cert.public_bytes(pem)
    )
    store.chmod(0o600)
    return ca_path, store


def server_properties(*, data: Path, keystore: Path, ports: list[int]) -> str:
    """One KRaft node: an INTERNAL (PLAINTEXT) listener for the broker itself, SASL_SSL for
    clients, and the controller."""
    internal, client, controller = ports
    listeners = (f"INTERNAL://127.0.0.1:{internal},SASL_SSL://127.0.0.1:{client},"
                 f"CONTROLLER://127.0.0.1:{controller}")  # fmt: skip
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}",
        f"listeners={listeners}",
        f"advertised.listeners={listeners}",
        "inter.broker.listener.name=INTERNAL",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL",
        f"sasl.enabled.mechanisms={MECHANISM}",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={keystore}",
        f"log.dirs={data}",
        "num.partitions=3",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=6",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=6",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        "num.network.threads=2",
        "num.io.threads=2",
        "",
    ])  # fmt: skip


@contextmanager
def secured_broker(directory: Path, *, wait_s: float = 90.0) -> Iterator[SecuredBroker]:
    """Start the broker, yield when its SASL_SSL listener serves metadata, stop it after."""
    jars = Settings(_env_file=None)  # type: ignore[call-arg]
    libs = stack_kafka.cached_libs(jars)
    if libs is None:
        raise RuntimeError("the Kafka jars are not cached: run `foldflow stack up` once")
    ca, keystore = write_certificates(directory)
    ports = free_ports(3)
    data, logs = directory / "data", directory / "logs"
    data.mkdir()
    logs.mkdir()
    config = directory / "server.properties"
    config.write_text(server_properties(data=data, keystore=keystore, ports=ports))
    fmt = stack_kafka.java_cmd(
        jars, libs, logs, stack_kafka.STORAGE_TOOL,
        "format", "--standalone", "-t", stack_kafka.new_cluster_id(), "-c", str(config),
        "--add-scram", f"{MECHANISM}=[name={USER},password={PASSWORD}]",
    )  # fmt: skip
    done = subprocess.run(fmt, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"formatting the SASL_SSL broker failed:\n{done.stdout}{done.stderr}")
    with (logs / "console.log").open("ab") as out:
        proc = subprocess.Popen(
            stack_kafka.java_cmd(jars, libs, logs, stack_kafka.KAFKA_MAIN, str(config)),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    broker = SecuredBroker(bootstrap=f"127.0.0.1:{ports[1]}", ca=ca, logs=logs)
    try:
        _wait_ready(broker, proc, wait_s=wait_s)
        yield broker
    finally:
        stack_kafka.terminate(proc.pid, grace=20)
        proc.wait(timeout=30)


def _wait_ready(broker: SecuredBroker, proc: subprocess.Popen[bytes], *, wait_s: float) -> None:
    from foldflow.kafka import admin

    client = admin(broker.settings())
    deadline = time.monotonic() + wait_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the SASL_SSL broker exited:\n{stack_kafka.logs_of(broker.logs.parent)}"
            )
        try:
            if client.list_topics(timeout=3).brokers:
                return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.5)
    raise RuntimeError(f"the SASL_SSL broker did not answer over SASL_SSL ({last}):\n"
                       f"{stack_kafka.logs_of(broker.logs.parent)}")  # fmt: skip
