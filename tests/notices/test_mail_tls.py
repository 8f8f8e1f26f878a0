"""Mail to the relay over verified TLS (issue 16 #7, ASVS V9.2.1): a real aiosmtpd server offering STARTTLS
(or TLS from the first byte) with certificates made here by a test CA. A relay whose certificate the CA named
in `smtp_ca_file` signed for its name gets the notice; a self-signed one, or one signed for another name, gets
nothing: the notice is not marked sent, keeps the reason as its error, and is delivered once the relay is
fixed. No key is committed: each run makes its own."""

from __future__ import annotations

import dataclasses
import ipaddress
import ssl
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from structlog.testing import capture_logs

from espace_sante import mail
from espace_sante.runtime import Runtime
from espace_sante.settings import Settings, UnsafeSettings
from espace_sante.spaces.notices import delivery, issue
from espace_sante.storage.db import Conn
from tests.cli.test_commands import _free_port
from tests.notices.test_notices import mail as address
from tests.notices.test_notices import space_of
from tests.registry.test_import import person, run, write
from tests.worker.smtp import Recorder
from tests.worker.test_queue import notice_ids, state_of


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Issued:
    (folder / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{stem}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Issued(folder / f"{stem}.crt", folder / f"{stem}.key")


class Authority:
    """A CA of the test's own, and server certificates: signed by it for a name, or self-signed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name("CA de test espace-sante"))
            .issuer_name(_name("CA de test espace-sante"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.file = _write(folder, "ca", self.cert, self.key).cert

    def server(self, stem: str, names: list[str], *, self_signed: bool = False) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        sans: list[x509.GeneralName] = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(_name(names[0]) if self_signed else self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
        if not self_signed:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        cert = builder.sign(key if self_signed else self.key, hashes.SHA256())
        return _write(self.folder, stem, cert, key)


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path)


class TlsRelay:
    """aiosmtpd with this certificate: STARTTLS required before MAIL, or TLS from the first byte."""

    def __init__(self, issued: Issued, *, implicit: bool = False) -> None:
        self.recorder = Recorder()
        self.port = _free_port()
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(issued.cert, issued.key)
        if implicit:
            self.controller = Controller(
                self.recorder, hostname="127.0.0.1", port=self.port, ssl_context=server_ctx
            )
        else:
            self.controller = Controller(
                self.recorder,
                hostname="127.0.0.1",
                port=self.port,
                tls_context=server_ctx,
                require_starttls=True,
            )

    def __enter__(self) -> TlsRelay:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def over_tls(runtime: Runtime, relay: TlsRelay, ca_file: Path | None, *, implicit: bool = False) -> Runtime:
    settings = runtime.settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": relay.port,
            "smtp_starttls": not implicit,
            "smtp_implicit_tls": implicit,
            "smtp_ca_file": ca_file,
        }
    )
    return dataclasses.replace(runtime, settings=settings)


async def one_waiting_notice(runtime: Runtime, tmp_path: Path) -> tuple[str, uuid.UUID, uuid.UUID]:
    row = person(email=address())
    await run(runtime, write(tmp_path / f"r-{uuid.uuid4().hex[:6]}.csv", [row]))
    await issue.send(runtime, deliver_now=False)
    space = await space_of(runtime, row["nir"])
    [notice] = await notice_ids(runtime, space)
    return row["email"], space, notice


async def test_a_relay_whose_certificate_the_named_ca_signed_gets_the_notice(
    runtime: Runtime, tmp_path: Path, ca: Authority
) -> None:
    to, space, notice = await one_waiting_notice(runtime, tmp_path)
    with TlsRelay(ca.server("relay", ["127.0.0.1", "localhost"])) as relay:
        rt = over_tls(runtime, relay, ca.file)
        assert await delivery.deliver_one(rt, space, notice) == "delivered"
        assert relay.recorder.by_recipient() == {to: 1}
    state = await state_of(runtime, notice)
    assert state["delivered_at"] is not None and state["sealed"] is None


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("self-signed", "self-signed certificate"),
        ("wrong name", "mismatch, certificate is not valid for '127.0.0.1'"),
    ],
)
async def test_a_relay_that_fails_the_check_gets_nothing_and_the_notice_waits(
    runtime: Runtime, tmp_path: Path, ca: Authority, case: str, reason: str
) -> None:
    to, space, notice = await one_waiting_notice(runtime, tmp_path)
    bad = (
        ca.server("bad", ["127.0.0.1"], self_signed=True)
        if case == "self-signed"
        else ca.server("bad", ["mail.autre.example"])
    )
    with TlsRelay(bad) as relay:
        rt = over_tls(runtime, relay, ca.file)
        with capture_logs() as logs, pytest.raises(delivery.DeliveryDeferred, match=reason):
            await delivery.deliver_one(rt, space, notice)
        assert relay.recorder.messages == []
    [refused] = [e for e in logs if e["event"] == "mail.tls_refused"]
    assert reason in refused["reason"] and refused["log_level"] == "warning" and to not in str(refused)
    state = await state_of(runtime, notice)
    assert state["delivered_at"] is None and state["handed_at"] is None and state["uncertain_at"] is None
    assert state["error"].startswith("SSLCertVerificationError: ") and reason in state["error"]
    assert state["sealed"] is not None  # its words are kept for the next attempt

    # The relay fixed (a certificate the CA signed for its name): the same notice goes, once.
    with TlsRelay(ca.server("good", ["127.0.0.1"])) as fixed:
        assert await delivery.deliver_one(over_tls(runtime, fixed, ca.file), space, notice) == "delivered"
        assert fixed.recorder.by_recipient() == {to: 1}


async def test_without_the_private_ca_the_system_cas_do_not_trust_the_relay(
    runtime: Runtime, tmp_path: Path, ca: Authority
) -> None:
    _, space, notice = await one_waiting_notice(runtime, tmp_path)
    with TlsRelay(ca.server("relay", ["127.0.0.1"])) as relay:
        with pytest.raises(delivery.DeliveryDeferred, match="unable to get local issuer certificate"):
            await delivery.deliver_one(over_tls(runtime, relay, None), space, notice)
        assert relay.recorder.messages == []
    assert (await state_of(runtime, notice))["delivered_at"] is None


async def test_a_missing_ca_file_is_said_and_the_notice_waits(
    runtime: Runtime, tmp_path: Path, ca: Authority
) -> None:
    _, space, notice = await one_waiting_notice(runtime, tmp_path)
    missing = tmp_path / "absent.pem"
    with TlsRelay(ca.server("relay", ["127.0.0.1"])) as relay:
        with capture_logs() as logs, pytest.raises(delivery.DeliveryDeferred, match=r"absent\.pem"):
            await delivery.deliver_one(over_tls(runtime, relay, missing), space, notice)
        assert relay.recorder.messages == []
    assert [e["reason"] for e in logs if e["event"] == "mail.tls_refused"] == [
        f"FileNotFoundError: {missing}"
    ]
    state = await state_of(runtime, notice)
    assert state["delivered_at"] is None and state["error"] == f"FileNotFoundError: {missing}"


async def test_implicit_tls_is_verified_too(runtime: Runtime, tmp_path: Path, ca: Authority) -> None:
    to, space, notice = await one_waiting_notice(runtime, tmp_path)
    bad_relay = TlsRelay(ca.server("bad", ["127.0.0.1"], self_signed=True), implicit=True)
    with bad_relay as bad, pytest.raises(delivery.DeliveryDeferred, match="self-signed certificate"):
        await delivery.deliver_one(over_tls(runtime, bad, ca.file, implicit=True), space, notice)
    with TlsRelay(ca.server("good", ["127.0.0.1"]), implicit=True) as good:
        rt = over_tls(runtime, good, ca.file, implicit=True)
        assert await delivery.deliver_one(rt, space, notice) == "delivered"
        assert good.recorder.by_recipient() == {to: 1}


async def test_a_security_notice_the_relay_cannot_get_over_tls_stays_in_the_outbox_with_why(
    runtime: Runtime, ca: Authority
) -> None:
    to = address()
    with TlsRelay(ca.server("bad", ["mail.autre.example"])) as relay:
        rt = over_tls(runtime, relay, ca.file)
        await mail.notify_credential_change(rt, to, "password")
        assert relay.recorder.messages == []

    async def q(conn: Conn) -> list[tuple[str, str]]:
        rows = await conn.fetch("SELECT error, body FROM outbox WHERE recipient = $1", to)
        return [(r["error"], r["body"]) for r in rows]

    [(error, body)] = await runtime.db.read("t", q)
    assert error.startswith("SSLCertVerificationError: IP address mismatch") and "mot de passe" in body


def test_production_refuses_a_relay_in_clear_text_unless_on_this_machine(tmp_path: Path) -> None:
    safe = {
        "environment": "production",
        "data_dir": tmp_path,
        "kek": "A" * 43 + "=",
        "audit_signing_key": "A" * 43 + "=",
        "password_pepper": "A" * 43 + "=",
        "database_url": "postgresql://db.example/espace",
        "base_url": "https://espace-sante.example",
    }
    with pytest.raises(UnsafeSettings, match="SMTP relay must be reached over TLS"):
        Settings(**safe, smtp_host="relais.example").check_production()
    Settings(**safe, smtp_host="relais.example", smtp_starttls=True).check_production()
    Settings(**safe, smtp_host="relais.example", smtp_implicit_tls=True).check_production()
    Settings(**safe, smtp_host="127.0.0.1").check_production()  # a local MTA
