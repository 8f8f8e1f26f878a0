"""Where every table lives on Citus (distributed PostgreSQL), and the step that puts it there.

The same migration files serve plain PostgreSQL and Citus. On a database with the `citus` extension, `migrate`
calls `distribute` after each migration from `BASELINE` on: a table the plan names and Citus does not know yet
is distributed then (its rows, if any, move to the workers). So the migrations up to the baseline run on plain
tables of the coordinator (as they did on every deployment so far), and every later migration runs on the
distributed schema, which is what `make test-citus` checks.

The plan (docs/architecture.md "On Citus"):
- **space data**, distributed on `space_id` and all colocated with `space`: a space's rows of every table sit in
  the same shard group, so a statement naming one space runs on one worker (Citus's router executor), joins
  within a space included, and the trace is appended in the same worker transaction as the action;
- **the lookups by identity**, distributed on the identifier in a group of their own: the registry's links
  (`registry_person`, on `nir`: its primary key, one row per INS, is what stops two imports from making two
  spaces for one person, and Citus requires the distribution column in every unique constraint) and the
  Patients' identifiers (`patient_identifier`, on `value`), so that "which space is this INS" runs on one shard;
- **the directory** (`dir_*`: professionals, roles, organisations), reference tables: small, read by the access
  policy inside statements about a space, so a copy on every worker keeps those statements on one worker;
- **the coordinator's own tables** (accounts, sessions, OAuth, sign-in limits, the job queue, bookkeeping): left
  local to the coordinator, where the application connects. They are written at every sign-in or token, which a
  reference table would replicate to every node, and they hold no space data. The job queue (procrastinate) also
  needs its triggers and LISTEN/NOTIFY, which work there as on plain PostgreSQL; advisory locks too, since every
  application process talks to the coordinator.

Table names come only from here: interpolating them into SQL is safe."""

from __future__ import annotations

from typing import Final

from espace_sante.storage.db import Conn
from espace_sante.storage.tables import DIRECTORY, SPACE

#: The first migration after which tables are distributed (see the module's docstring).
BASELINE: Final = 27

#: The anchor of the space colocation group; distributed first.
ANCHOR: Final = "space"

#: Space data: distributed on space_id, colocated with `space`. Order matters where a foreign key points to
#: another distributed table (binary_content -> blob).
BY_SPACE: Final[tuple[str, ...]] = (
    "space",
    "space_key",
    "space_settings",
    "space_representative",
    SPACE.resource,
    SPACE.version,
    *SPACE.index_tables,
    "audit_chain",
    "audit_event",
    "audit_seal",
    "access_basis",
    "access_block",
    "emergency_access",
    "blob",
    "binary_content",
    "blob_upload",
    "hidden_document",
    "activation_code",
    "notice",
    "legacy_set_aside",
    "notification",
    "notification_choice",
    "space_reader",
)

#: Distributed on another column: table -> (column, the table it is colocated with or "none", why). In order.
BY_OWN_KEY: Final[dict[str, tuple[str, str, str]]] = {
    "registry_person": (
        "nir",
        "none",
        "one row per INS: the key that makes a second space for one person impossible",
    ),
    "patient_identifier": (
        "value",
        "registry_person",
        "which space holds a Patient with this identifier, found on one shard (an INS with its registry link)",
    ),
}

#: Replicated to every node.
REFERENCE: Final[tuple[str, ...]] = (DIRECTORY.resource, DIRECTORY.version, *DIRECTORY.index_tables)

#: Local to the coordinator, and why.
COORDINATOR: Final[dict[str, str]] = {
    "schema_migration": "bookkeeping of the migrations",
    "oauth_client": "machine clients and apps",
    "oauth_token": "access tokens (written at every token)",
    "oauth_grant": "a person's authorisations of apps and software",
    "oauth_code": "authorization codes",
    "oauth_refresh": "refresh tokens",
    "oauth_jti": "client assertion replay cache",
    "oidc_flow": "OpenID Connect sign-ins in progress",
    "operator": "insurer agents",
    "account": "people who sign in",
    "account_password": "sign-in credentials",  # pragma: allowlist secret (a table name and its reason)
    "account_totp": "sign-in credentials",
    "account_totp_pending": "sign-in credentials",
    "account_recovery_code": "sign-in credentials",
    "account_passkey": "sign-in credentials",
    "webauthn_challenge": "sign-in ceremonies",
    "signin_flow": "sign-in ceremonies",
    "web_session": "sign-in sessions (written at every request's touch)",
    "signin_throttle": "sign-in limits",
    "outbox": "mail to send (security notices, nothing medical)",
    "letter_batch": "letter batches' folders and hand-over dates",
    "registry_import": "registry import checkpoints",
    "procrastinate_jobs": "background jobs (procrastinate: triggers, LISTEN/NOTIFY)",
    "procrastinate_events": "background jobs (procrastinate)",
    "procrastinate_periodic_defers": "background jobs (procrastinate)",
    "procrastinate_workers": "background jobs (procrastinate)",
}


def planned() -> set[str]:
    """Every table the plan places."""
    return {*BY_SPACE, *BY_OWN_KEY, *REFERENCE, *COORDINATOR}


async def is_citus(conn: Conn) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')"))


async def placed(conn: Conn) -> dict[str, str]:
    """The tables Citus knows, by name, with their kind (`h` hash-distributed, `n` reference)."""
    rows = await conn.fetch(
        "SELECT logicalrelid::regclass::text AS name, partmethod::text AS method FROM pg_dist_partition"
    )
    return {r["name"]: r["method"] for r in rows}


async def distribute(conn: Conn) -> list[str]:
    """Place the tables of the plan that exist and Citus does not know yet; returns their names. Idempotent."""
    exist = {
        r["relname"]
        for r in await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
        )
    }
    known = await placed(conn)
    done: list[str] = []
    async with conn.transaction():
        # The trace's append-only triggers (0002_audit.sql) refuse UPDATE and DELETE; they touch no other row,
        # which is what makes a trigger safe on a shard (Citus docs, "citus.enable_unsafe_triggers").
        await conn.execute("SET LOCAL citus.enable_unsafe_triggers = on")
        # Distributing a table that has rows copies them in this transaction, over one connection per shard.
        await conn.execute("SET LOCAL citus.multi_shard_modify_mode = 'sequential'")
        for table in BY_SPACE:
            if table in exist and table not in known:
                colocate = "none" if table == ANCHOR else ANCHOR
                await conn.execute(
                    "SELECT create_distributed_table($1, 'space_id', colocate_with => $2)", table, colocate
                )
                done.append(table)
        for table, (column, colocate, _why) in BY_OWN_KEY.items():
            if table in exist and table not in known:
                await conn.execute(
                    "SELECT create_distributed_table($1, $2, colocate_with => $3)", table, column, colocate
                )
                done.append(table)
        for table in REFERENCE:
            if table in exist and table not in known:
                await conn.execute("SELECT create_reference_table($1)", table)
                done.append(table)
    return done
