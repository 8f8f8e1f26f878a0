"""Trusted devices: a browser that signed in to an account before keeps its own allowance of sign-in failures
(people/ratelimit.py), so that a stranger failing from elsewhere, or from the same address, never makes it
wait (NIST SP 800-63B 5.2.2: "accepting only authentication requests that come from a white list").

The browser keeps the proof in one cookie, signed with a key derived from the pepper (outside the database):
for each account signed in from it (a family computer has several), an entry `<device>.<account>.<expiry>.<mac>`
bound to that account, so that signing in to one's own account gives no allowance on anyone else's. The proof
opens nothing: it only chooses which counter an attempt is counted under. Nothing is stored server-side.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid

from espace_sante.people.passwords import peppers
from espace_sante.settings import Settings

COOKIE = "__Host-es_device"
#: Accounts remembered per browser; the oldest entry goes first.
MAX_ENTRIES = 5
_MAX_COOKIE = 1024


def _mac(settings: Settings, device: str, account: str, expiry: str) -> str:
    key = peppers(settings).subkey("trusted-device")
    digest = hmac.new(key, f"{device}.{account}.{expiry}".encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _entries(cookie: str) -> list[tuple[str, str, str, str]]:
    if not cookie or len(cookie) > _MAX_COOKIE:
        return []
    found = []
    for item in cookie.split("~"):
        parts = item.split(".")
        if len(parts) == 4 and all(parts):
            found.append((parts[0], parts[1], parts[2], parts[3]))
    return found


def trusted_device(
    settings: Settings, cookie: str, account_id: uuid.UUID | None, *, now: float | None = None
) -> str:
    """The device id this cookie proves for `account_id`, or "" (no entry, expired, or not signed by us)."""
    if account_id is None:
        return ""
    moment = time.time() if now is None else now
    for device, account, expiry, mac in _entries(cookie):
        if account != account_id.hex or not expiry.isdigit() or int(expiry) < moment:
            continue
        if hmac.compare_digest(mac.encode(), _mac(settings, device, account, expiry).encode()):
            return device
    return ""


def remember(settings: Settings, cookie: str, account_id: uuid.UUID, *, now: float | None = None) -> str:
    """The cookie's new value after a successful sign-in to `account_id` from this browser: its entry for the
    account made or renewed, the browser's device id kept, other accounts' valid entries kept."""
    moment = time.time() if now is None else now
    kept = [
        e
        for e in _entries(cookie)
        if e[1] != account_id.hex
        and e[2].isdigit()
        and int(e[2]) >= moment
        and hmac.compare_digest(e[3].encode(), _mac(settings, *e[:3]).encode())
    ]
    device = kept[0][0] if kept else secrets.token_urlsafe(12).replace(".", "_").replace("~", "_")
    expiry = str(int(moment) + settings.trusted_device_days * 86400)
    mine = (device, account_id.hex, expiry, _mac(settings, device, account_id.hex, expiry))
    entries = [*kept[-(MAX_ENTRIES - 1) :], mine]
    return "~".join(".".join(e) for e in entries)


def max_age(settings: Settings) -> int:
    return settings.trusted_device_days * 86400
