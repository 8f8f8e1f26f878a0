"""The schema keeps the promise that lets the data move to Citus: space data is keyed by space."""

from __future__ import annotations

import inspect

import asyncpg

from espace_sante.runtime import Runtime
from espace_sante.storage import resources, search

#: Tables outside spaces, and why. A new table must be added to one side or the other.
NOT_SPACE_DATA = {
    "schema_migration": "bookkeeping",
    "oauth_client": "machine clients (directory)",
    "oauth_token": "machine client tokens (directory)",
    "oauth_grant": "a person's authorisations of apps and software (directory)",
    "oauth_code": "authorization codes (directory)",
    "oauth_refresh": "refresh tokens (directory)",
    "oauth_jti": "client assertion replay cache (directory)",
    "oidc_flow": "OpenID Connect sign-ins in progress (directory)",
    "operator": "insurer agents (directory)",
    "account": "people who sign in (directory)",
    "account_password": "sign-in credentials (directory)",
    "account_totp": "sign-in credentials (directory)",
    "account_totp_pending": "sign-in credentials (directory)",
    "account_recovery_code": "sign-in credentials (directory)",
    "account_passkey": "sign-in credentials (directory)",
    "webauthn_challenge": "sign-in ceremonies (directory)",
    "signin_flow": "sign-in ceremonies (directory)",
    "web_session": "sign-in sessions (directory)",
    "signin_throttle": "sign-in limits (directory)",
    "outbox": "mail to send (directory)",
    "registry_person": "INS -> space lookup of the registry import, unique per INS (Citus: distributed by nir)",
    "registry_import": "registry import checkpoints (bookkeeping)",
    "procrastinate_jobs": "background jobs (procrastinate, 0012_jobs.sql); args name rows, hold no data",
    "procrastinate_events": "background jobs (procrastinate)",
    "procrastinate_periodic_defers": "background jobs (procrastinate)",
    "procrastinate_workers": "background jobs (procrastinate)",
}


async def _tables(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1"
    )
    return [r["relname"] for r in rows]


async def test_every_table_of_space_data_leads_its_keys_with_space_id(runtime: Runtime) -> None:
    """Reads the live schema: each table of space data has a NOT NULL space_id, and its primary key and every
    unique index start with it (Citus requires the distribution column in every unique constraint)."""
    async with runtime.db.pool.acquire() as conn:
        tables = await _tables(conn)
        problems = []
        for table in tables:
            if table in NOT_SPACE_DATA:
                continue
            column = await conn.fetchrow(
                "SELECT attnotnull FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'space_id'",
                table,
            )
            if column is None or not column["attnotnull"]:
                problems.append(f"{table}: no NOT NULL space_id column")
                continue
            indexes = await conn.fetch(
                "SELECT i.indexrelid::regclass::text AS name, a.attname AS first FROM pg_index i "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
                "WHERE i.indrelid = $1::regclass AND (i.indisunique OR i.indisprimary)",
                table,
            )
            problems += [
                f"{table}: unique index {ix['name']} starts with {ix['first']}"
                for ix in indexes
                if ix["first"] != "space_id"
            ]
        assert problems == []
        assert {"resource", "resource_version", "sp_token", "space_key"} <= set(tables)


def test_storage_functions_that_touch_medical_data_require_a_decision() -> None:
    """SECURITY V1 1.4.4: a storage function that reads or writes resources cannot be called without the
    access policy's Decision, so no path skips the policy."""
    missing = []
    for module in (resources, search):
        for name, func in inspect.getmembers(module, inspect.iscoroutinefunction):
            if name.startswith("_") or func.__module__ != module.__name__:
                continue
            if "decision" not in inspect.signature(func).parameters:
                missing.append(f"{module.__name__}.{name}")
    # `includes` returns only keys, which the service passes through the policy before reading;
    # `created_here` only tells whether this transaction wrote a row (a document's content check).
    assert sorted(missing) == [
        "espace_sante.storage.resources.created_here",
        "espace_sante.storage.search.includes",
    ]
