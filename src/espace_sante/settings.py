"""One Settings object, read from the environment (`ESPACE_SANTE_*`, plus `DATABASE_URL`)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class UnsafeSettings(RuntimeError):
    """Raised at start-up when production is asked to run with settings that would lose or expose data."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESPACE_SANTE_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    #: Development mode: demo tokens, generated key-encryption key. Also switched on by data made with `--demo`.
    dev: bool = False
    data_dir: Path = Path(".data")
    #: Use this PostgreSQL instead of the embedded one (libpq URI).
    database_url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL"))
    #: Public base URL of the service, used in Bundle links and fullUrls.
    base_url: str = "http://127.0.0.1:8000"

    #: The key-encryption key (32 bytes, base64) or a file holding it. In development a key is generated in
    #: the data folder; production refuses to start without one (SECURITY V6 6.4.1: never in the database).
    kek: str | None = None
    kek_file: Path | None = None
    #: Earlier key-encryption keys still able to unwrap data keys during a rotation, base64, comma-separated.
    kek_previous: str = ""

    #: The key that signs the trace's chain heads: a raw Ed25519 private key (32 bytes, base64) or a file holding
    #: it. Like the KEK it is never in the database (SECURITY V7 7.3.3): a seal proves nothing if whoever can
    #: rewrite the trace can also re-sign it. Generated in the data folder in development; required in production.
    audit_signing_key: str | None = None
    audit_signing_key_file: Path | None = None
    #: Earlier signing keys' public keys (raw Ed25519, base64, comma-separated): seals made before a rotation
    #: still verify. The current key's public key is always accepted.
    audit_verify_keys: str = ""

    #: The password pepper (32 bytes, base64) or a file holding it: an HMAC key applied to every password before
    #: argon2id, kept outside the database like the KEK (SECURITY V2 2.4.2/2.4.5: a copy of the database alone
    #: cannot check a guess). Also keys the encryption of TOTP secrets, recovery code digests and sign-in form
    #: tokens. Generated in the data folder in development; required in production.
    password_pepper: str | None = None
    password_pepper_file: Path | None = None
    #: Earlier peppers (base64, comma-separated), still accepted after a rotation until each password is
    #: re-hashed at its owner's next sign-in.
    password_pepper_previous: str = ""
    #: Optional list of breached passwords as SHA-1 digests, one `HEX:COUNT` line each, sorted (the "Pwned
    #: Passwords" download format). Checked by binary search on top of the bundled common-password list.
    breached_passwords_file: Path | None = None
    #: argon2id cost (RFC 9106 second recommended option: t=3, 64 MiB).
    password_hash_time_cost: int = 3
    password_hash_memory_kib: int = 65536
    #: Sessions (SECURITY V3 3.3.2): idle and absolute timeouts; a factor change needs a sign-in this recent.
    session_idle_seconds: int = 30 * 60
    session_absolute_seconds: int = 12 * 3600
    reauth_seconds: int = 10 * 60
    #: Sign-in limits (SECURITY V2 2.2.1, docs/access-policy.md "Sign-in limits"): free failures per secret and
    #: source (address, or trusted device) and per address within a window, then a wait of
    #: `signin_backoff_seconds` doubling with each failure up to `signin_lockout_seconds`; and a ceiling per
    #: login (password) and per account (codes), all sources together, per `signin_account_window_seconds`.
    signin_max_failures: int = Field(default=5, ge=1)
    signin_ip_max_failures: int = Field(default=50, ge=1)
    signin_failure_window_seconds: int = Field(default=15 * 60, ge=1)
    signin_backoff_seconds: int = Field(default=30, ge=1)
    signin_lockout_seconds: int = Field(default=15 * 60, ge=1)
    signin_account_max_failures: int = Field(default=100, ge=1)
    signin_code_max_failures: int = Field(default=10, ge=1)
    signin_account_window_seconds: int = Field(default=3600, ge=1)
    #: A browser that signed in to an account is its trusted device for this many days (a signed cookie): it
    #: keeps its own allowance of failures whatever others do (people/devices.py).
    trusted_device_days: int = Field(default=90, ge=1, le=400)
    #: The reverse proxies whose X-Forwarded-For (and X-Forwarded-Proto) are believed: addresses or networks,
    #: comma-separated (ASVS 14.5.4). None by default: the peer address is the client's.
    trusted_proxies: str = ""
    #: Lifetime of a WebAuthn challenge and of the step between password and second factor.
    signin_step_seconds: int = 300
    #: Mail for security notices (SECURITY V2 2.2.3/2.5.5). Without an SMTP host, messages go to the `outbox`
    #: table instead.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_starttls: bool = False
    #: TLS from the first byte (SMTPS, RFC 8314 3.3, usually port 465) instead of STARTTLS; wins over it.
    smtp_implicit_tls: bool = False
    #: A private CA (PEM file) that signed the relay's certificate, trusted instead of the system's CAs. With TLS
    #: (STARTTLS or implicit) the relay's certificate and its name (`smtp_host`) are always checked (ASVS
    #: V9.2.1): activation codes travel in these messages.
    smtp_ca_file: Path | None = None
    mail_from: str = "Mon espace santé <ne-pas-repondre@espace-sante.localhost>"

    db_pool_min: int = 2
    db_pool_max: int = 10
    db_statement_timeout_ms: int = 15_000

    #: A request body, counted while streaming: an ITI-65 Bundle carries its documents in base64 (4/3).
    max_request_bytes: int = 60 * 1024 * 1024
    max_bundle_entries: int = 1000
    search_default_count: int = 20
    search_max_count: int = 200
    system_token_lifetime: int = 300
    #: Seconds between two seals of the trace's chain heads by each serving process (0: only by
    #: `espace-sante audit seal`). What a rewrite could hide is bounded by this interval.
    audit_seal_interval_seconds: float = Field(default=300, ge=0)
    #: How long an emergency ("bris de glace") or SAMU access lasts (R1111-48: time-limited), in minutes.
    emergency_access_minutes: int = Field(default=240, ge=5, le=24 * 60)
    #: Lifetime of development tokens from `espace-sante token issue` (SECURITY: user tokens <= 1 h).
    dev_token_lifetime: int = Field(default=3600, ge=60, le=3600)

    # --- OAuth 2 / SMART for apps and software (oauth/authorize.py, oauth/backend.py) ---------------
    #: Access tokens acting for a person through an app or a professional's software (SECURITY: <= 1 h).
    user_token_lifetime: int = Field(default=3600, ge=60, le=3600)
    #: Refresh tokens (offline_access / online_access), rotated on every use, in days.
    refresh_token_lifetime_days: int = Field(default=30, ge=1, le=365)
    #: Authorization codes (SECURITY FHIR item 10: single use, <= 60 s).
    authorization_code_lifetime: int = Field(default=60, ge=10, le=60)
    #: Development and tests only: let jwks_uri and OpenID Connect discovery reach http://localhost /
    #: 127.0.0.1 (production refuses it: outbound fetches go to public https addresses only).
    outbound_allow_loopback: bool = False

    # --- OpenID Connect federation (people/federation.py): the national identity providers -------------
    #: FranceConnect+ for holders: issuer URL (discovery at <issuer>/.well-known/openid-configuration).
    fcplus_issuer: str = ""
    fcplus_client_id: str = ""
    fcplus_client_secret: str = ""
    fcplus_scope: str = "openid given_name family_name birthdate gender birthplace birthcountry"
    #: The weakest `acr` accepted (eIDAS: eidas1 < eidas2 < eidas3); PGSSI-S asks substantial (eidas2).
    fcplus_acr: str = "eidas2"
    #: The claim that carries the holder's INS (FranceConnect's pivot identity has none: see architecture.md).
    fcplus_ins_claim: str = "ins"
    #: Pro Santé Connect for professionals.
    psc_issuer: str = ""
    psc_client_id: str = ""
    psc_client_secret: str = ""
    psc_scope: str = "openid scope_all"
    psc_acr: str = "eidas1"
    #: The claim that carries the national identifier (IdNat_PS: "8" + RPPS), or `preferred_username`.
    psc_rpps_claim: str = "SubjectNameID"

    # --- Documents (record/documents/, IHE MHD / PDSm) -------------------------------------------------
    #: Largest document content accepted, decoded (PDSm deposits; a CDA or a scanned report).
    document_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    #: Largest total content of one submission (ITI-65 Bundle), decoded.
    submission_max_bytes: int = Field(default=40 * 1024 * 1024, ge=1024)
    #: Largest file a holder uploads from the portal.
    upload_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    #: Accept codes outside the French value sets when their system is a known international one (LOINC,
    #: SNOMED CT, IHE format codes), as in the ANS example bundles; each such code is reported as a warning.
    #: Off by default: the DMP accepts only the French JDV codes (docs/documents.md, "Lenient mode").
    documents_lenient_codes: bool = False
    #: Where document content lives: "local" (files under blob_dir) or "s3" (any S3 service).
    blob_backend: Literal["local", "s3"] = "local"
    #: Local blob folder (default: <data_dir>/blobs).
    blob_dir: Path | None = None
    s3_endpoint_url: str | None = None
    s3_bucket: str = "espace-sante-documents"
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    #: A blob written for a submission that never committed is deleted after this many seconds.
    blob_orphan_grace_seconds: int = Field(default=3600, ge=0)
    #: A document hidden from the holder (INVISIBLE_PATIENT) that nobody released: the holder is told to see a
    #: professional after this many days, and it becomes visible on its own after the second (R1111-53).
    hidden_notice_days: int = Field(default=14, ge=0)
    hidden_release_days: int = Field(default=30, ge=1)
    #: Seconds between two runs of the documents timer in each serving process (0: only from the CLI).
    documents_job_interval_seconds: float = Field(default=3600, ge=0)

    # Activation codes (spaces/activation.py, docs/activation.md).
    #: Days a code stays valid after it is issued: the opposition window (CSP R1111-28, 6 weeks).
    activation_code_days: int = Field(default=42, ge=1)
    #: Wrong birth dates typed with one code before it locks (only an operator's new code unlocks it).
    activation_max_failures: int = Field(default=5, ge=1)
    #: Redemption attempts per client address within the window; reaching it locks the address for the lockout.
    activation_ip_max_attempts: int = Field(default=20, ge=1)
    activation_ip_window_seconds: int = Field(default=3600, ge=1)
    activation_ip_lockout_seconds: int = Field(default=3600, ge=1)
    #: Redemption attempts per minute for the whole service (every process), beyond which all are refused.
    activation_global_per_minute: int = Field(default=600, ge=1)

    #: Spaces a client may open through the API (a Patient created with its INS) per window, every process
    #: counted together (SECURITY 11.1.4): spaces come from the registry, so a client opening many is a fault
    #: or an attack. Beyond it the API answers 429 with Retry-After (docs/architecture.md).
    api_spaces_per_client: int = Field(default=100, ge=0)
    api_spaces_window_seconds: int = Field(default=3600, ge=1)

    #: The lifecycle of a space (spaces/lifecycle.py, docs/lifecycle.md). A notified space opens this many
    #: days after its notice (6 weeks, CSP R1111-28); a closed one is kept this many years before it is
    #: destroyed; a destruction the holder asks for is carried out after this many days (within 3 months);
    #: a suspension not contested within this many days closes the space (6 weeks, R1111-36).
    opposition_window_days: int = Field(default=42, ge=0)
    #: E-mail notices per delivery job (spaces/notices.py `_record`): a batch of notices writes one job row
    #: per this many e-mails rather than one per e-mail; a worker killed mid-job leaves that many waiting for
    #: jobs.recover (a minute or so) or the sweep.
    notice_emails_per_job: int = Field(default=100, ge=1, le=10_000)
    archive_years: int = Field(default=10, ge=0)
    destruction_delay_days: int = Field(default=90, ge=0)
    suspension_days: int = Field(default=42, ge=0)

    #: The legacy DMP import (legacy/, spaces/legacy/importer.py, docs/legacy.md): limits checked on a package's ZIP
    #: central directory before anything is read (SECURITY V12 12.1.3, FHIR/IHE attack 8).
    legacy_package_max_bytes: int = Field(default=2 * 1024**3, ge=1024)
    legacy_max_entries: int = Field(default=10_000, ge=1)
    legacy_max_total_bytes: int = Field(default=8 * 1024**3, ge=1024)
    legacy_entry_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    legacy_max_ratio: int = Field(default=100, ge=2)

    #: Retention of activation codes in clear (ASVS 8.3.8, docs/notices.md "Retention"): the files of a letter
    #: batch (PDFs and manifest) are deleted when the operator confirms their hand-over (`letters handed`), or
    #: this many days after they were built; the text of a message kept in the outbox is dropped this many days
    #: after it was delivered (its row, without the text, stays).
    letter_files_days: int = Field(default=14, ge=0)
    outbox_body_days: int = Field(default=7, ge=0)

    log_level: str = "info"

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        """Each item an IP address or network: a typo must not silently trust nobody, or everybody. Networks
        are strict (`10.0.0.0/8`, not `10.0.0.1/8`): uvicorn reads them so and would ignore a loose one."""
        items = [item.strip() for item in value.split(",") if item.strip()]
        for item in items:
            try:
                ipaddress.ip_network(item, strict=True)
            except ValueError:
                raise ValueError(
                    f"ESPACE_SANTE_TRUSTED_PROXIES : « {item} » n'est ni une adresse IP ni un réseau "
                    f"/ is neither an IP address nor a network"
                ) from None
        return ",".join(items)

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [item for item in self.trusted_proxies.split(",") if item]

    @property
    def embedded(self) -> bool:
        return not self.database_url

    @property
    def pg_data(self) -> Path:
        return self.data_dir.resolve() / "pg"

    @property
    def blob_path(self) -> Path:
        return (self.blob_dir or self.data_dir / "blobs").resolve()

    @property
    def dev_marker(self) -> Path:
        return self.data_dir / "DEMO"

    @property
    def development_mode(self) -> bool:
        """True when ESPACE_SANTE_DEV=1 or when the data folder was made by `--demo`."""
        return self.dev or (self.environment == "development" and self.dev_marker.exists())

    @cached_property
    def fhir_base(self) -> str:
        return self.base_url.rstrip("/") + "/fhir"

    def kek_bytes(self) -> list[bytes]:
        """The current key-encryption key first, then previous ones. Generates one in development."""
        keys: list[bytes] = []
        if self.kek:
            keys.append(_b64key(self.kek, "ESPACE_SANTE_KEK"))
        elif self.kek_file:
            keys.append(_b64key(self.kek_file.read_text().strip(), str(self.kek_file)))
        else:
            if self.environment == "production":
                raise UnsafeSettings("ESPACE_SANTE_KEK or ESPACE_SANTE_KEK_FILE is required in production")
            keys.append(_dev_kek(self.data_dir / "kek.key"))
        for item in filter(None, (s.strip() for s in self.kek_previous.split(","))):
            keys.append(_b64key(item, "ESPACE_SANTE_KEK_PREVIOUS"))
        return keys

    def audit_signing_key_bytes(self) -> bytes:
        """The raw Ed25519 private key that seals chain heads. Generates one in development."""
        what = "the audit signing key must be a raw Ed25519 private key (32 bytes)"
        if self.audit_signing_key:
            return _b64key(self.audit_signing_key, "ESPACE_SANTE_AUDIT_SIGNING_KEY", what)
        if self.audit_signing_key_file:
            text = self.audit_signing_key_file.read_text().strip()
            return _b64key(text, str(self.audit_signing_key_file), what)
        if self.environment == "production":
            raise UnsafeSettings(
                "ESPACE_SANTE_AUDIT_SIGNING_KEY or ESPACE_SANTE_AUDIT_SIGNING_KEY_FILE is required in production"
            )
        return _dev_kek(self.data_dir / "audit-signing.key", what)

    def password_pepper_bytes(self) -> list[bytes]:
        """The current password pepper first, then previous ones. Generates one in development."""
        what = "the password pepper must be 32 bytes"
        peppers: list[bytes] = []
        if self.password_pepper:
            peppers.append(_b64key(self.password_pepper, "ESPACE_SANTE_PASSWORD_PEPPER", what))
        elif self.password_pepper_file:
            text = self.password_pepper_file.read_text().strip()
            peppers.append(_b64key(text, str(self.password_pepper_file), what))
        else:
            if self.environment == "production":
                raise UnsafeSettings(
                    "ESPACE_SANTE_PASSWORD_PEPPER or ESPACE_SANTE_PASSWORD_PEPPER_FILE is required in production"
                )
            peppers.append(_dev_kek(self.data_dir / "password-pepper.key", what))
        for item in filter(None, (s.strip() for s in self.password_pepper_previous.split(","))):
            peppers.append(_b64key(item, "ESPACE_SANTE_PASSWORD_PEPPER_PREVIOUS", what))
        return peppers

    def audit_verify_key_bytes(self) -> list[bytes]:
        """Raw Ed25519 public keys of earlier signing keys, still accepted when verifying seals."""
        what = "an audit verify key must be a raw Ed25519 public key (32 bytes)"
        items = filter(None, (s.strip() for s in self.audit_verify_keys.split(",")))
        return [_b64key(item, "ESPACE_SANTE_AUDIT_VERIFY_KEYS", what) for item in items]

    def check_production(self) -> None:
        """Refuse to serve production data with unsafe settings (DESIGN.md, "Running it")."""
        if self.environment != "production":
            return
        problems = []
        if self.dev:
            problems.append("development mode is on (ESPACE_SANTE_DEV)")
        if not (self.kek or self.kek_file):
            problems.append("no key-encryption key (ESPACE_SANTE_KEK / ESPACE_SANTE_KEK_FILE)")
        if not (self.audit_signing_key or self.audit_signing_key_file):
            problems.append(
                "no audit signing key (ESPACE_SANTE_AUDIT_SIGNING_KEY / ESPACE_SANTE_AUDIT_SIGNING_KEY_FILE)"
            )
        if not (self.password_pepper or self.password_pepper_file):
            problems.append(
                "no password pepper (ESPACE_SANTE_PASSWORD_PEPPER / ESPACE_SANTE_PASSWORD_PEPPER_FILE)"
            )
        if not self.database_url:
            problems.append("the embedded PostgreSQL is for development; set DATABASE_URL")
        if not self.base_url.startswith("https://"):
            problems.append("ESPACE_SANTE_BASE_URL must be https")
        if self.outbound_allow_loopback:
            problems.append("ESPACE_SANTE_OUTBOUND_ALLOW_LOOPBACK is for development and tests")
        if (
            self.smtp_host
            and not (self.smtp_starttls or self.smtp_implicit_tls)
            and not _loopback(self.smtp_host)
        ):
            # Activation codes, recovery and emergency notices travel in these messages (ASVS V9.2.1).
            problems.append(
                "the SMTP relay must be reached over TLS (ESPACE_SANTE_SMTP_STARTTLS or _SMTP_IMPLICIT_TLS)"
            )
        for name, issuer in (("FCPLUS", self.fcplus_issuer), ("PSC", self.psc_issuer)):
            if issuer and not issuer.startswith("https://"):
                problems.append(f"ESPACE_SANTE_{name}_ISSUER must be https")
        if problems:
            raise UnsafeSettings("refusing to start in production: " + "; ".join(problems))


def _loopback(host: str) -> bool:
    """A relay on this machine (a local MTA that relays onwards): its connection never leaves the host."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_KEK_SIZE = "the key-encryption key must be 32 bytes (AES-256)"


def _b64key(text: str, where: str, what: str = _KEK_SIZE) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UnsafeSettings(f"{where}: not valid base64") from exc
    if len(key) != 32:
        raise UnsafeSettings(f"{where}: {what}, got {len(key)}")
    return key


def _dev_kek(path: Path, what: str = _KEK_SIZE) -> bytes:
    """A random 32-byte key kept in `path` (mode 0600), made once. Also serves the development audit signing
    key: a raw Ed25519 private key is 32 random bytes too."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # A name of this process's own: processes started together (`registry import --jobs N`) all make the
        # key at once, and one's unlink must not pull another's file away before its link.
        tmp = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(secrets.token_bytes(32)).decode())
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # atomic and never overwrites a key another process just wrote
        tmp.unlink(missing_ok=True)
    return _b64key(path.read_text().strip(), str(path), what)
