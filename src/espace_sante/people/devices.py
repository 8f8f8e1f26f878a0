"""Trusted devices: a browser that signed in to an account before keeps its own allowance of sign-in failures
(people/ratelimit.py), so that a stranger failing from elsewhere, or from the same address, never makes it
wait (NIST SP 800-63B 5.2.2: "accepting only authentication requests that come from a white list").

The browser keeps the proof in one cookie, signed with a key derived from the pepper (outside the database):
for each account signed in from it (a family computer has several), an entry
`<device>.<account>.<expiry>.<generation>.<mac>` bound to that account, so that signing in to one's own account
gives no allowance on anyone else's. `<generation>` is the account's credential generation when the entry was
made (storage/accounts.py: it goes up when the password or the TOTP secret changes and on "sign out
everywhere"): an entry of an older generation proves nothing, so those events end every trusted device. The
proof opens nothing: it only chooses which counter an attempt is counted under. Nothing is stored server-side.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
import uuid

from espace_sante.people.passwords import peppers
from espace_sante.settings import Settings

COOKIE = "__Host-es_device"
#: Accounts remembered per browser; the oldest entry goes first.
MAX_ENTRIES = 5
_MAX_COOKIE = 1024
#: ASCII digits only: `str.isdigit` accepts "²", which `int` refuses.
_NUMBER = re.compile(r"[0-9]{1,12}")


def _mac(settings: Settings, device: str, account: str, expiry: str, generation: str) -> str:
    key = peppers(settings).subkey("trusted-device")
    signed = f"{device}.{account}.{expiry}.{generation}".encode()
    digest = hmac.new(key, signed, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _entries(cookie: str) -> list[tuple[str, str, str, str, str]]:
    """The cookie's well-formed entries (numbers in ASCII digits); anything else is ignored."""
    if not cookie or len(cookie) > _MAX_COOKIE:
        return []
    found = []
    for item in cookie.split("~"):
        parts = item.split(".")
        if len(parts) == 5 and all(parts) and _NUMBER.fullmatch(parts[2]) and _NUMBER.fullmatch(parts[3]):
            found.append((parts[0], parts[1], parts[2], parts[3], parts[4]))
    return found


def _signed(settings: Settings, entry: tuple[str, str, str, str, str], moment: float) -> bool:
    device, account, expiry, generation, mac = entry
    return int(expiry) >= moment and hmac.compare_digest(
        mac.encode(), _mac(settings, device, account, expiry, generation).encode()
    )


def trusted_device(
    settings: Settings,
    cookie: str,
    account_id: uuid.UUID | None,
    generation: int,
    *,
    now: float | None = None,
) -> str:
    """The device id this cookie proves for `account_id` at its current credential `generation`, or "" (no
    entry, expired, of an older generation, or not signed by us)."""
    if account_id is None:
        return ""
    moment = time.time() if now is None else now
    for entry in _entries(cookie):
        if entry[1] == account_id.hex and entry[3] == str(generation) and _signed(settings, entry, moment):
            return entry[0]
    return ""


def remember(
    settings: Settings, cookie: str, account_id: uuid.UUID, generation: int, *, now: float | None = None
) -> str:
    """The cookie's new value after a successful sign-in to `account_id` (at its credential `generation`) from
    this browser: its entry for the account made or renewed, the browser's device id kept, other accounts'
    entries kept while signed and unexpired (an older generation of theirs is refused when used)."""
    moment = time.time() if now is None else now
    kept = [e for e in _entries(cookie) if e[1] != account_id.hex and _signed(settings, e, moment)]
    device = kept[0][0] if kept else secrets.token_urlsafe(12).replace(".", "_").replace("~", "_")
    expiry = str(int(moment) + settings.trusted_device_days * 86400)
    mine = (
        device,
        account_id.hex,
        expiry,
        str(generation),
        _mac(settings, device, account_id.hex, expiry, str(generation)),
    )
    entries = [*kept[-(MAX_ENTRIES - 1) :], mine]
    return "~".join(".".join(e) for e in entries)


def max_age(settings: Settings) -> int:
    return settings.trusted_device_days * 86400
