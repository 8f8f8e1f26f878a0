"""The password policy and storage (SECURITY V2 2.1.1-2.1.10, 2.4.1/2.4.2/2.4.5)."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError

from espace_sante.people import passwords
from espace_sante.people.passwords import WeakPassword, validate
from espace_sante.runtime import Runtime
from espace_sante.settings import Settings, UnsafeSettings


@pytest.mark.parametrize(
    "password",
    [
        "girafe violette sous la pluie",
        "x7!Kq2#mZp9$",  # exactly 12
        "🦒🌧️💜 trois emojis et des mots",
        "Ünïcødé ßtraße ça marche très bien",
        "二十一文字の日本語のパスワードです",
        "tab\u00a0insécable et espaces   multiples",
        "k" + "é3#zP" * 25 + "q2",  # exactly 128
    ],
)
def test_any_unicode_from_12_to_128_characters_is_accepted(password: str) -> None:
    assert 12 <= len(unicodedata.normalize("NFC", password)) <= 128
    assert validate(password) == unicodedata.normalize("NFC", password)


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("court mais", "au moins 12"),
        ("é" * 20 + "z" * 109, "dépasser 128"),
        ("password1234", "trop courant"),
        ("Motdepasse2024!", "trop courant"),  # a common base with digits and symbols around it
        ("azertyazertyazerty", "trop courant"),  # repeated
        ("iloveyou1234567", "trop courant"),
        ("aaaaaaaaaaaaaaaa", "trop courant"),
        ("abababababababab", "trop courant"),
        ("123456789012345", "trop courant"),
        ("abcdefghijklmnop", "trop courant"),
        ("saut de\nligne dans le mot", "contrôle"),
    ],
)
def test_short_long_common_predictable_or_control_passwords_are_refused(password: str, why: str) -> None:
    with pytest.raises(WeakPassword, match=why):
        validate(password)


def test_no_composition_rule_and_no_truncation() -> None:
    """Lower-case words only are fine (no "one digit, one symbol" rule); a 128-character password is kept whole:
    changing its last character changes the hash check."""
    validate("des mots tout simples en minuscules")


def test_the_login_cannot_be_in_the_password() -> None:
    with pytest.raises(WeakPassword, match="identifiant"):
        validate("jeanne.martin et son chat", login="Jeanne.Martin@exemple.fr")


def test_an_optional_breached_list_in_pwned_passwords_format(tmp_path: Path) -> None:
    """Production can add Have I Been Pwned's downloadable list (sorted SHA-1 `HEX:COUNT` lines): found by
    binary search, whatever the file's size."""
    leaked = "ce mot de passe a fuité en 2019"
    others = {f"autre mot de passe {i} {os.urandom(4).hex()}" for i in range(5000)}
    digest = {
        p: hashlib.sha1(p.encode(), usedforsecurity=False).hexdigest().upper() for p in [*others, leaked]
    }
    path = tmp_path / "pwned.txt"
    path.write_text("".join(f"{d}:{n}\r\n" for n, d in enumerate(sorted(digest.values()), 1)))
    by_digest = sorted(digest, key=digest.__getitem__)
    for found in (leaked, by_digest[0], by_digest[1], by_digest[-1], by_digest[2500]):
        assert passwords.in_breached_file(path, found)  # the first and last lines are reachable too
    assert not passwords.in_breached_file(path, "une phrase jamais vue nulle part 42")
    with pytest.raises(WeakPassword, match="fuites"):
        validate(leaked, breached_file=path)


def _settings(tmp_path: Path, pepper: bytes) -> Settings:
    return Settings(
        data_dir=tmp_path,
        password_pepper=base64.b64encode(pepper).decode(),
        password_hash_time_cost=1,
        password_hash_memory_kib=8192,
    )


def test_a_copy_of_the_database_alone_cannot_check_a_guess(tmp_path: Path) -> None:
    """The stored hash is argon2id over HMAC(pepper, password): with the right password but without the
    pepper (which is never in the database), neither plain argon2 nor another pepper verifies it."""
    password = "girafe violette sous la pluie"
    settings = _settings(tmp_path, os.urandom(32))
    stored, pepper_id = passwords.hash_sync(settings, password)
    assert stored.startswith("$argon2id$")
    with pytest.raises(VerifyMismatchError):
        PasswordHasher().verify(stored, password)
    other = _settings(tmp_path, os.urandom(32))
    assert not passwords.verify_sync(other, stored, pepper_id, password).ok
    assert passwords.verify_sync(settings, stored, pepper_id, password).ok
    again, _ = passwords.hash_sync(settings, password)
    assert again != stored  # a fresh salt each time


def test_nfc_makes_the_same_password_typed_two_ways_the_same(tmp_path: Path) -> None:
    settings = _settings(tmp_path, os.urandom(32))
    composed = "café crème au soleil"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    stored, pepper_id = passwords.hash_sync(settings, composed)
    assert passwords.verify_sync(settings, stored, pepper_id, decomposed).ok
    long = "é" * 127 + "a"
    stored, pepper_id = passwords.hash_sync(settings, long)
    assert not passwords.verify_sync(settings, stored, pepper_id, "é" * 127 + "b").ok


def test_a_rotated_pepper_still_verifies_and_asks_for_a_rehash(tmp_path: Path) -> None:
    old, new = os.urandom(32), os.urandom(32)
    before = _settings(tmp_path, old)
    stored, pepper_id = passwords.hash_sync(before, "girafe violette sous la pluie")
    after = before.model_copy(
        update={
            "password_pepper": base64.b64encode(new).decode(),
            "password_pepper_previous": base64.b64encode(old).decode(),
        }
    )
    checked = passwords.verify_sync(after, stored, pepper_id, "girafe violette sous la pluie")
    assert checked.ok and checked.rehash


def test_the_pepper_is_generated_in_development_and_required_in_production(tmp_path: Path) -> None:
    dev = Settings(data_dir=tmp_path)
    first = dev.password_pepper_bytes()
    assert first == Settings(data_dir=tmp_path).password_pepper_bytes()
    assert oct((tmp_path / "password-pepper.key").stat().st_mode & 0o777) == "0o600"
    production = Settings(data_dir=tmp_path / "prod", environment="production")
    with pytest.raises(UnsafeSettings, match="PASSWORD_PEPPER"):
        production.password_pepper_bytes()
    with pytest.raises(UnsafeSettings, match="no password pepper"):
        production.check_production()
    assert not (tmp_path / "prod" / "password-pepper.key").exists()


def test_processes_starting_together_make_one_pepper_and_all_read_it(tmp_path: Path) -> None:
    """`registry import --jobs N` on a fresh data folder: N processes make the development pepper at once. Each
    gets the one that won, none fails on another's temporary file (threads here: the same files, more
    interleavings)."""
    for n in range(20):
        folder = tmp_path / str(n)
        start = threading.Barrier(8)

        def make(folder: Path = folder, start: threading.Barrier = start) -> bytes:
            start.wait()
            return Settings(data_dir=folder).password_pepper_bytes()[0]

        with ThreadPoolExecutor(8) as pool:
            made = list(pool.map(lambda _: make(), range(8)))
        assert len(set(made)) == 1
        assert [f.name for f in folder.iterdir()] == ["password-pepper.key"]


async def test_the_running_service_uses_its_own_pepper(runtime: Runtime) -> None:
    assert passwords.peppers(runtime.settings).current_id == passwords.pepper_id(
        runtime.settings.password_pepper_bytes()[0]
    )
