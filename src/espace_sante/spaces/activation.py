"""Activation codes: the confidential, single-use code a notice carries, which with the holder's birth date
proves that whoever types it received the notice (PRODUCT section 2; SECURITY V2 2.3.1, 2.5.1, 2.6.1-2.6.3,
2.2.1). The rules are in docs/activation.md.

- A code is 14 characters drawn with `secrets` from a 30-symbol alphabet without look-alikes (no 0/O, 1/I/L,
  nor U, which reads as V): 14 x log2(30) ≈ 68.7 bits of entropy. Printed in groups, `ABCD-EFGH-JKMN-PQ`.
- Typed input is normalised: Unicode compatibility forms (full-width letters of a phone keyboard), upper case,
  spaces, dashes, dots and underscores removed, U read as V. 0, O, 1, I and L never appear in a code and have
  no single printed twin to map to: typed, they make the code wrong, refused like any wrong code.
- Stored only as HMAC-SHA256(pepper-derived key "activation", normalised code): the pepper lives outside the
  database, so a copy of it cannot test a guess. The digest is not salted per space because the code is what
  finds the space; the secret key plays the salt's part (no precomputation without it). Every configured
  pepper is tried, so a code issued before a pepper rotation still works. Digests compare in constant time.
- One live code per space, valid `activation_code_days` (42, the opposition window); issuing again replaces
  it, which invalidates the previous code and clears the failures and the lock.
- Redeeming needs the code and the birth date of the space's Patient. Single use: one conditional UPDATE
  ... RETURNING decides, so of concurrent redemptions exactly one wins.
- Limits, all in PostgreSQL so that every process shares them: each attempt first counts, before any check,
  against the client address (`act-ip:`, locked for a while past its limit) and against a per-minute ceiling
  for the whole service (`act-all`), in `signin_throttle` like sign-in's limits; then a wrong birth date with
  a right code counts against that code (the person), which locks at `activation_max_failures` until an
  operator issues a new one. A wrong code names no person, so it counts only against the address and the
  ceiling: 68.7 bits make guessing codes hopeless under those.
- Refusals say the same thing whether the code is unknown, expired, used or the birth date wrong; only a
  locked code says so (the person must call), and too many attempts from an address or on the service say
  "try later" (which tells nothing about the code).
- Every issue, success, failure and lockout is traced (`activation:*`) in the space's chain when the code
  named a space, else in the directory's chain: never the code nor the birth date typed.

What redeeming does to the space (its lifecycle state) is decided by the lifecycle: `redeem` returns the space
and runs the caller's `then(conn, space_id)` in the transaction that uses the code, so that the code is spent
if and only if the lifecycle's transition commits. The activation page's three uses are at the end:
`check` (right code and birth date, nothing spent: the opposition's confirmation step comes first),
`activate_with_code` and `oppose_with_code`.
"""

from __future__ import annotations

import hmac
import logging
import math
import re
import secrets
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from espace_sante.access.actors import ACTIVATION, Actor
from espace_sante.access.policy import Decision, decide
from espace_sante.context import Context
from espace_sante.errors import Conflict, NotFound
from espace_sante.people import ratelimit
from espace_sante.people.passwords import Peppers, peppers
from espace_sante.runtime import Runtime
from espace_sante.spaces import identity, transitions
from espace_sante.storage import accounts as accounts_store
from espace_sante.storage import activation as store
from espace_sante.storage import audit as audit_store
from espace_sante.storage import lifecycle as lifecycle_store
from espace_sante.storage import people as people_store
from espace_sante.storage import ratelimit as counters
from espace_sante.storage import spaces
from espace_sante.storage.audit import MINOR_FAILURE, SUCCESS, Record
from espace_sante.storage.db import Conn
from espace_sante.storage.documents import blob_key
from espace_sante.storage.keys import DIRECTORY_SPACE

#: Printed symbols: digits 2-9 and the letters but I, L, O and U (no 0/O, 1/I/L, U/V confusion).
ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 14
GROUPS = (4, 4, 4, 2)
#: 14 x log2(30) ≈ 68.7 bits: above the 60 the provisioning issue asks. Online guessing is bounded by the
#: limits below; offline guessing of a copied table needs the pepper, which is not in the database.
ENTROPY_BITS = LENGTH * math.log2(len(ALPHABET))
#: Typed characters read as the printed one they stand for.
_LOOKALIKES = str.maketrans({"U": "V"})
_SEPARATORS = re.compile(r"[\s\-_.\u2010-\u2015\u2212]")

GLOBAL_KEY = "act-all"

WRONG = (
    "Code d'activation ou date de naissance incorrects, ou code qui n'est plus valable. "
    "/ Wrong activation code or birth date, or a code that is no longer valid."
)
LOCKED = (
    "Ce code d'activation est bloqué après trop d'essais : appelez le service Mon espace santé ou rendez-vous à "
    "l'accueil de votre caisse d'assurance maladie pour en recevoir un nouveau. / This activation code is "
    "locked after too many attempts: call the Mon espace santé service or visit your health insurance office "
    "to receive a new one."
)
THROTTLED = (
    "Trop d'essais d'activation : réessayez plus tard. / Too many activation attempts: try again later."
)
ALREADY_ACTIVE = (
    "Cet espace est déjà activé et a déjà un compte : connectez-vous avec votre identifiant. Votre code n'a pas "
    "servi. / This space is already activated and has an account: sign in. Your code was not used."
)
NOT_ACTIVABLE = (
    "Cet espace ne peut pas être activé en ligne dans son état actuel : appelez le service Mon espace santé. "
    "Votre code n'a pas servi. / This space cannot be activated online in its current state: call the Mon "
    "espace santé service. Your code was not used."
)
TOO_LATE = (
    "Cet espace est déjà ouvert : il n'est plus possible de s'opposer à sa création. Vous pouvez en revanche "
    "le fermer à tout moment. Votre code n'a pas servi. / This space is already open: it is too late to object "
    "to its creation, but you may close it at any time. Your code was not used."
)

log = logging.getLogger(__name__)

#: What lifecycle runs in the redeeming transaction, with the redeemed space.
Then = Callable[[Conn, uuid.UUID], Awaitable[None]]


class ActivationRefused(Exception):
    """A refused redemption; `message` is shown to the person as is (French, then English)."""

    def __init__(self, message: str, *, locked: bool = False) -> None:
        super().__init__(message)
        self.message = message
        #: The code is locked: only an operator's new code helps (the message says to call).
        self.locked = locked


# --- codes -------------------------------------------------------------------------------------------------


def new_code() -> str:
    """A fresh code, grouped for printing (`ABCD-EFGH-JKMN-PQ`)."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return grouped(raw)


def grouped(raw: str) -> str:
    parts, at = [], 0
    for size in GROUPS:
        parts.append(raw[at : at + size])
        at += size
    return "-".join(parts)


def normalise(text: str) -> str:
    """The code as typed, reduced to its symbols: compatibility forms, upper case, no separators, U as V."""
    folded = unicodedata.normalize("NFKC", text[:200]).upper()
    return _SEPARATORS.sub("", folded).translate(_LOOKALIKES)


def well_formed(normalised: str) -> bool:
    return len(normalised) == LENGTH and all(c in ALPHABET for c in normalised)


def digest(p: Peppers, normalised: str, key_id: str | None = None) -> bytes:
    return hmac.digest(p.subkey("activation", key_id), b"activation " + normalised.encode(), "sha256")


def _reading() -> Decision:
    """The activation pages' decision to read the holder's identity (access/named.py: `activation`)."""
    return decide(ACTIVATION, "read", "Patient")


# --- issuing -----------------------------------------------------------------------------------------------


def _actor(ctx: Context) -> tuple[str, str, str]:
    """Who the trace names: the signed-in person or operator, else an anonymous visitor of the activation page
    (the service acting for an unidentified person)."""
    if ctx.actor.kind == "system":
        return "anonymous", "activation", ""
    return ctx.actor.kind, ctx.actor.id, ctx.actor.display


async def issue_in(
    conn: Conn, ctx: Context, space_id: uuid.UUID, *, valid_until: datetime | None = None
) -> str:
    """`issue` in the caller's transaction (a notice job stores the code's digest, and defers the mail or
    letter that carries the code, in one transaction)."""
    if not await spaces.exists(conn, space_id):
        raise NotFound("Espace introuvable / space not found")
    settings = ctx.runtime.settings
    p = peppers(settings)
    code = new_code()
    expires = valid_until or datetime.now(UTC) + timedelta(days=settings.activation_code_days)
    replaced, expires = await store.replace(conn, space_id, digest(p, normalise(code)), p.current_id, expires)
    await audit_store.append(
        conn,
        space_id,
        Record(
            action="activation:issue",
            outcome=SUCCESS,
            actor_kind=ctx.actor.kind,
            actor_id=ctx.actor.id,
            actor_display=ctx.actor.display,
            basis="reissue" if replaced else "",
            detail=f"until={expires.astimezone(UTC).date().isoformat()}",
            request_id=ctx.request_id,
        ),
    )
    return code


async def issue(ctx: Context, space_id: uuid.UUID, *, valid_until: datetime | None = None) -> str:
    """A new activation code for the space, valid for the opposition window (or until `valid_until`); any
    previous code stops working and a lock is lifted. Returns the code, the only time it exists in clear:
    the caller prints or mails it and keeps it nowhere else. NotFound for an unknown space."""
    return await ctx.runtime.db.interaction(
        "activation_issue", issue_in, ctx, space_id, valid_until=valid_until
    )


async def discard(conn: Conn, space_id: uuid.UUID) -> bool:
    """Forget the space's code in the caller's transaction (opposition, closure, destruction)."""
    return await store.discard(conn, space_id)


# --- redeeming ---------------------------------------------------------------------------------------------


def ip_key(ip: str) -> str:
    """The counter of a client address: IPv6 per /64, the rule sign-in counts by too (people/ratelimit.py)."""
    return f"act-ip:{ratelimit.address(ip)}"


@dataclass
class _Gate:
    allowed: bool = True
    address_locked_now: bool = False


async def _enter(ctx: Context, ip: str) -> _Gate:
    """Count the attempt against the address and the service's ceiling, in its own committed transaction (so
    concurrent attempts in every process see it at once)."""
    s = ctx.runtime.settings

    async def count(conn: Conn) -> _Gate:
        gate = _Gate()
        key = ip_key(ip)
        tries, until = await counters.attempt(conn, key, s.activation_ip_window_seconds)
        if until is not None:
            gate.allowed = False
        elif tries > s.activation_ip_max_attempts:
            gate.allowed = False
            gate.address_locked_now = await counters.lock(conn, key, s.activation_ip_lockout_seconds)
        if not gate.allowed:
            # Refused for its address: it does not spend the service's ceiling, which one locked-out client
            # would otherwise keep spent for everyone (review of 2026-12-03).
            return gate
        total, _ = await counters.attempt(conn, GLOBAL_KEY, 60)
        if total > s.activation_global_per_minute:
            gate.allowed = False
        return gate

    return await ctx.runtime.db.interaction("activation_gate", count)


def _record(ctx: Context, action: str, *, basis: str, ip: str, outcome: str = MINOR_FAILURE) -> Record:
    kind, actor_id, display = _actor(ctx)
    return Record(
        action=action,
        outcome=outcome,
        actor_kind=kind,
        actor_id=actor_id,
        actor_display=display,
        basis=basis,
        detail=f"ip={ip or 'unknown'}",
        request_id=ctx.request_id,
    )


async def _refuse_unknown(ctx: Context, *, basis: str, ip: str, address_locked: bool = False) -> None:
    """Trace a refusal that names no space, in the directory's chain."""

    async def work(conn: Conn) -> None:
        await audit_store.append(
            conn, DIRECTORY_SPACE, _record(ctx, "activation:failure", basis=basis, ip=ip)
        )
        if address_locked:
            await audit_store.append(
                conn, DIRECTORY_SPACE, _record(ctx, "activation:locked", basis="address", ip=ip)
            )

    await ctx.runtime.db.interaction("activation_refused", work)


@dataclass(frozen=True)
class _Outcome:
    space_id: uuid.UUID | None = None
    refusal: str | None = None
    locked: bool = False


async def redeem(
    ctx: Context, code: str, birth_date: date, *, ip: str = "", then: Then | None = None
) -> uuid.UUID:
    """The space whose activation code this is, when `birth_date` is its holder's: the code is spent (single
    use) and, when given, `then(conn, space_id)` runs in the same transaction (lifecycle's transition; if it
    raises, nothing is spent and its exception goes up). ActivationRefused with the message to show
    otherwise (`locked` true when only a new code helps)."""
    rt = ctx.runtime
    settings = rt.settings
    gate = await _enter(ctx, ip)
    if not gate.allowed:
        await _refuse_unknown(ctx, basis="throttled", ip=ip, address_locked=gate.address_locked_now)
        raise ActivationRefused(THROTTLED)
    typed = normalise(code)
    if not well_formed(typed):
        await _refuse_unknown(ctx, basis="wrong code", ip=ip)
        raise ActivationRefused(WRONG)
    p = peppers(settings)
    candidates = {key_id: digest(p, typed, key_id) for key_id in p.keys}

    async def work(conn: Conn) -> _Outcome:
        rows = [
            r
            for r in await store.find(conn, list(candidates.values()))
            if r.pepper_id in candidates and hmac.compare_digest(r.digest, candidates[r.pepper_id])
        ]
        if len(rows) != 1:  # unknown (two rows would be a 68-bit collision: refuse rather than pick one)
            await audit_store.append(
                conn, DIRECTORY_SPACE, _record(ctx, "activation:failure", basis="wrong code", ip=ip)
            )
            return _Outcome(refusal=WRONG)
        row = rows[0]
        space = row.space_id

        async def failure(basis: str) -> None:
            await audit_store.append(conn, space, _record(ctx, "activation:failure", basis=basis, ip=ip))

        if row.locked_at is not None:
            await failure("locked")
            return _Outcome(space, LOCKED, locked=True)
        if row.used_at is not None:
            await failure("used")
            return _Outcome(space, WRONG)
        if row.expired:
            await failure("expired")
            return _Outcome(space, WRONG)
        if await store.issued_to_former_representatives(conn, space):
            # Sent to a minor's representatives, whose rights have ended (the 18th birthday): the code was
            # theirs, it must not make the young adult's account nor oppose for them; their own code follows.
            await failure("expired")
            return _Outcome(space, WRONG)
        born = await store.holder_birth_date(conn, _reading(), space) or await identity.birth_date(
            conn, ctx.runtime, space, decision=_reading()
        )
        if born is None or born != birth_date:
            _, locked_now = await store.fail(conn, space, row.digest, settings.activation_max_failures)
            await failure("wrong birth date")
            if locked_now:
                await audit_store.append(
                    conn, space, _record(ctx, "activation:locked", basis="too many failures", ip=ip)
                )
                return _Outcome(space, LOCKED, locked=True)
            return _Outcome(space, WRONG)
        if await store.use(conn, space, row.digest) is None:
            await failure("used")
            return _Outcome(space, WRONG)
        await audit_store.append(
            conn, space, _record(ctx, "activation:redeem", basis="", ip=ip, outcome=SUCCESS)
        )
        await counters.give_back(conn, ip_key(ip))
        if then is not None:
            await then(conn, space)
        return _Outcome(space)

    outcome = await rt.db.interaction("activation_redeem", work)
    if outcome.refusal is not None:
        raise ActivationRefused(outcome.refusal, locked=outcome.locked)
    assert outcome.space_id is not None
    return outcome.space_id


# --- the activation page: check, activate, oppose ------------------------------------------------------------

#: States in which an opposition may still be recorded (the window has not ended).
OPPOSABLE = transitions.TRANSITIONS["oppose"].sources


@dataclass(frozen=True)
class Holder:
    """Whose space a code opened, as the activation page and the proof of opposition need it: administrative
    data from the registry's Patient, never anything medical."""

    space_id: uuid.UUID
    ins: str
    name: str
    birth_date: date | None
    state: str
    #: The space has legal representatives whose rights run: they act for the child and sign in as themselves.
    minor: bool
    #: The holder already has a sign-in account.
    has_account: bool


def name_of(body: dict[str, object]) -> str:
    """ "Anne Marie Lefèvre" from a Patient's first name entry."""
    names = body.get("name")
    first = names[0] if isinstance(names, list) and names and isinstance(names[0], dict) else {}
    given = first.get("given")
    given_text = " ".join(str(g) for g in given) if isinstance(given, list) else ""
    return f"{given_text} {first.get('family') or ''}".strip()


async def holder_in(conn: Conn, rt: Runtime, space_id: uuid.UUID) -> Holder:
    """The space's holder, read in the caller's transaction (the Patient is decrypted with the `activation`
    actor's decision: it is the registry's identity, which the person just proved to own with code and birth
    date)."""
    row = await lifecycle_store.row_of(conn, space_id)
    if row is None or row.state == "destroyed":
        raise NotFound("Espace introuvable / space not found")
    found = await identity.body(
        conn, rt, space_id, decision=_reading()
    )  # the Patient, or the waiting identity
    body: dict[str, object] = {} if found is None else found[1]
    ins = await people_store.ins_of_space(conn, _reading(), space_id) or ""
    born = await store.holder_birth_date(conn, _reading(), space_id) or await identity.birth_date(
        conn, rt, space_id, decision=_reading()
    )
    minor = bool(await people_store.representatives_of(conn, _reading(), space_id))
    account = await accounts_store.by_actor(conn, "holder", ins) if ins else None
    return Holder(space_id, ins, name_of(body), born, row.state, minor, account is not None)


def _person(ctx: Context, holder: Holder) -> Context:
    """Who the lifecycle's trace names: the holder, whose code and birth date were just checked; for a minor,
    one of the representatives, unknown by name (both get the same code), so the service acting for them."""
    if holder.minor or not holder.ins:
        actor = replace(ACTIVATION, display="représentant légal, avec le code d'activation")
    else:
        actor = Actor("holder", holder.ins, display=holder.name)
    return Context(ctx.runtime, actor, request_id=ctx.request_id)


class _Checked(Exception):
    """Rolls back a redemption that was only a check (nothing is spent), carrying what was found."""

    def __init__(self, holder: Holder) -> None:
        super().__init__("checked")
        self.holder = holder


async def check(ctx: Context, code: str, birth_date: date, *, ip: str = "") -> Holder:
    """Whether the code and the birth date are right, spending nothing: the same limits and counters as
    `redeem` (a wrong birth date counts against the code and may lock it; the attempt counts against the
    address), then the redeeming transaction is rolled back. The opposition page checks first, so that the
    person reads the consequences knowing their code works, and redeems only when they confirm.
    ActivationRefused as `redeem`."""
    rt = ctx.runtime

    async def then(conn: Conn, space_id: uuid.UUID) -> None:
        raise _Checked(await holder_in(conn, rt, space_id))

    try:
        await redeem(ctx, code, birth_date, ip=ip, then=then)
    except _Checked as done:
        return done.holder
    raise AssertionError("redeem returned without running then")  # pragma: no cover


@dataclass(frozen=True)
class Activated:
    holder: Holder
    #: The space was active already (activated earlier without a sign-in account being made then): the code
    #: was spent so that the person can now make their account.
    was_active: bool


async def activate_with_code(ctx: Context, code: str, birth_date: date, *, ip: str = "") -> Activated:
    """Spend the code and activate the space (lifecycle `activate`, in the same transaction), at any time, the
    opposition window included. Returns the holder, for the page that makes their sign-in account.
    ActivationRefused when the code or birth date is refused (`redeem`), when the space is already active
    with an account (or a minor's: the representatives sign in with their own accounts) or in a state that
    cannot be activated; then the code is not spent."""
    rt = ctx.runtime
    done: list[Activated] = []

    async def then(conn: Conn, space_id: uuid.UUID) -> None:
        holder = await holder_in(conn, rt, space_id)
        if not holder.ins:
            # The account is the INS's (actor id): a space without one cannot give a sign-in (review 2026-12-03).
            raise ActivationRefused(NOT_ACTIVABLE)
        if holder.state == "active":
            if holder.has_account or holder.minor:
                raise ActivationRefused(ALREADY_ACTIVE)
            done.append(Activated(holder, True))
            return
        try:
            await transitions.activate_in(conn, _person(ctx, holder), space_id)
        except Conflict:
            raise ActivationRefused(NOT_ACTIVABLE) from None
        done.append(Activated(replace(holder, state="active"), False))

    await redeem(ctx, code, birth_date, ip=ip, then=then)
    return done[-1]


async def oppose_with_code(ctx: Context, code: str, birth_date: date, *, ip: str = "") -> Holder:
    """Spend the code and record the opposition online (lifecycle `oppose`, channel online, in the same
    transaction): the space's data and data key are destroyed, only the identity stays. Returns the holder
    (for the proof of opposition). ActivationRefused as `redeem`, or TOO_LATE once the space opened (the code
    is then not spent)."""
    rt = ctx.runtime
    done: list[Holder] = []
    objects: list[tuple[uuid.UUID, uuid.UUID]] = []

    async def then(conn: Conn, space_id: uuid.UUID) -> None:
        holder = await holder_in(conn, rt, space_id)
        if holder.state not in OPPOSABLE:
            raise ActivationRefused(TOO_LATE)
        person = _person(ctx, holder)
        await transitions.oppose_in(conn, person, space_id, "online")
        objects[:] = person.uploads  # a retried transaction starts the list again
        done.append(replace(holder, state="opposed"))

    await redeem(ctx, code, birth_date, ip=ip, then=then)
    await _delete_objects(rt, objects)
    return done[-1]


async def _delete_objects(rt: Runtime, objects: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """After commit, best effort, as the lifecycle does for an opposition: the objects are unreadable already
    (their data key is destroyed); one left is found by `documents verify` as an object without a row."""
    for space_id, blob_id in objects:
        try:
            await rt.blob_store.delete(blob_key(space_id, blob_id))
        except Exception as exc:  # crypto-shredded already
            log.warning("blob of opposed space %s left in the store: %s", space_id, type(exc).__name__)
