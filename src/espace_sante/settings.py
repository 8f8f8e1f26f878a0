"""One Settings object, read from the environment (`ESPACE_SANTE_*`, plus `DATABASE_URL`)."""

from __future__ import annotations

import base64
import binascii
import contextlib
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
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

    db_pool_min: int = 2
    db_pool_max: int = 10
    db_statement_timeout_ms: int = 15_000

    max_request_bytes: int = 30 * 1024 * 1024
    max_bundle_entries: int = 1000
    search_default_count: int = 20
    search_max_count: int = 200
    system_token_lifetime: int = 300

    log_level: str = "info"

    @property
    def embedded(self) -> bool:
        return not self.database_url

    @property
    def pg_data(self) -> Path:
        return self.data_dir.resolve() / "pg"

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
        if not self.database_url:
            problems.append("the embedded PostgreSQL is for development; set DATABASE_URL")
        if not self.base_url.startswith("https://"):
            problems.append("ESPACE_SANTE_BASE_URL must be https")
        if problems:
            raise UnsafeSettings("refusing to start in production: " + "; ".join(problems))


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
    import os
    import secrets

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(secrets.token_bytes(32)).decode())
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # atomic and never overwrites a key another process just wrote
        tmp.unlink(missing_ok=True)
    return _b64key(path.read_text().strip(), str(path), what)
