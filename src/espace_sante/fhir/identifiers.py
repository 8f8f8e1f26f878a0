"""French identifiers: INS (NIR), RPPS, IDNPS, FINESS, IDNST. Pure functions, no I/O.

Systems and formats come from fhir/data/identifier-systems.json (fr-core and PDSm profiles);
the NIR rules from the CNAM library assurance-maladie-digital/nir-validation (NirKey.php, NirValidator.php).

Every ``validate_*`` returns the normalised value or raises ``IdentifierError`` whose message is French
first, then English, and names the problem precisely (the position, the expected key...).
"""

from __future__ import annotations

import re

__all__ = [
    "FINESS",
    "IDNPS",
    "IDNST",
    "INS_NIA",
    "INS_NIR",
    "INS_NIR_DEMO",
    "INS_NIR_TEST",
    "NIR_REGEX",
    "RPPS",
    "SYSTEM_LABELS",
    "IdentifierError",
    "check_identifier",
    "explain_identifier",
    "make_nir",
    "nir_key",
    "validate_finess",
    "validate_idnps",
    "validate_idnst",
    "validate_nir",
    "validate_rpps",
]

INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
INS_NIA = "urn:oid:1.2.250.1.213.1.4.9"
INS_NIR_TEST = "urn:oid:1.2.250.1.213.1.4.10"
INS_NIR_DEMO = "urn:oid:1.2.250.1.213.1.4.11"
IDNPS = "urn:oid:1.2.250.1.71.4.2.1"
RPPS = "https://rpps.esante.gouv.fr"
IDNST = "urn:oid:1.2.250.1.71.4.2.2"
FINESS = "https://finess.esante.gouv.fr"

# identifier-systems.json, nir.regex (a test checks that the two stay equal). The key is optional in the
# regex because the CNAM library also accepts a bare 13-character NIR; validate_nir requires all 15.
NIR_REGEX = r"^[12]\d{2}(0[1-9]|1[0-2]|[2-9]\d)(\d{2}|2A|2B)\d{3}\d{3}(9[0-7]|[0-8]\d)?$"
_NIR_RE = re.compile(NIR_REGEX, re.ASCII)
_DIGITS = frozenset("0123456789")
_CORSICA = {"2A": "19", "2B": "18"}  # identifier-systems.json nir.key: 2A -> 19, 2B -> 18

# Département-like prefixes of FINESS and ADELI numbers: two digits, or 2A/2B for Corsica.
_FINESS_RE = re.compile(r"^(\d{2}|2A|2B)\d{7}$", re.ASCII)
_ADELI_RE = _FINESS_RE
_RPPS_RE = re.compile(r"^\d{11}$", re.ASCII)

# identifier-systems.json, IDNPS.prefixes (TRE_G08-TypeIdentifiantPersonne).
_IDNPS_PREFIXES = {
    "0": "ADELI",
    "1": "cabinet ADELI",
    "3": "FINESS",
    "4": "SIREN",
    "5": "SIRET",
    "6": "cabinet RPPS",
    "8": "RPPS",
}


class IdentifierError(ValueError):
    """An identifier value that breaks its format or its check key.

    ``fr`` and ``en`` are the two halves of the message, so that callers can prefix them with the
    element that carries the value; ``str(error)`` is "fr / en".
    """

    def __init__(self, fr: str, en: str | None = None) -> None:
        self.fr = fr
        self.en = en or fr
        self.message = fr if en is None else f"{fr} / {en}"
        super().__init__(self.message)


def _compact(value: object, label: str) -> str:
    """Drop every whitespace character (numbers are often written in groups: "2 55 08 14 168 025 38")."""
    if not isinstance(value, str):
        raise IdentifierError(
            f"le {label} doit être une chaîne de caractères", f"the {label} must be a string of characters"
        )
    return "".join(value.split()).upper()


def _nir_number(nir13: str) -> int:
    body = nir13[:5] + _CORSICA.get(nir13[5:7], nir13[5:7]) + nir13[7:13]
    return int(body)


def _check_nir_characters(nir: str) -> None:
    """Positions are 1-based, as in the NIR structure (identifier-systems.json nir.structure)."""
    if nir.isascii() and nir.isdigit():  # nearly every NIR (not Corsican): nothing to point at
        return
    for index, char in enumerate(nir):
        position = index + 1
        if char in _DIGITS:
            continue
        if position == 7 and char in "AB" and nir[5] == "2":
            continue
        if char in "AB":
            fr_hint = "2A/2B n'est permis qu'en positions 6-7, département corse"
            en_hint = "2A/2B is only allowed at positions 6-7, Corsican département"
        else:
            fr_hint, en_hint = "chiffre attendu", "digit expected"
        shown = char if char.isprintable() else repr(char)
        raise IdentifierError(
            f"caractère « {shown} » non autorisé en position {position} ({fr_hint})",
            f"character '{shown}' not allowed at position {position} ({en_hint})",
        )


def _check_nir_structure(nir: str) -> None:
    """Check the 13 characters before the key: characters, sex, birth month."""
    _check_nir_characters(nir)
    if nir[0] not in "12":
        raise IdentifierError(
            f"premier chiffre (sexe) « {nir[0]} » invalide : 1 ou 2 attendu",
            f"first digit (sex) '{nir[0]}' is invalid: 1 or 2 expected",
        )
    month = nir[3:5]
    # 01-12, or 20-99 when the birth month is unknown (identifier-systems.json nir.structure).
    if not ("01" <= month <= "12" or month >= "20"):
        raise IdentifierError(
            f"mois de naissance « {month} » invalide : 01 à 12 attendu (20 à 99 si inconnu)",
            f"birth month '{month}' is invalid: 01 to 12 expected (20 to 99 if unknown)",
        )


def nir_key(nir13: str) -> int:
    """The NIR check key: 97 - (N mod 97), N being the 13 characters read as a number with 2A -> 19 and
    2B -> 18 (identifier-systems.json nir.key; CNAM NirKey.php). Raises IdentifierError on a malformed
    13-character NIR."""
    nir = _compact(nir13, "NIR")
    if len(nir) != 13:
        raise IdentifierError(
            f"longueur incorrecte : {len(nir)} caractères au lieu de 13 (NIR sans clé)",
            f"wrong length: {len(nir)} characters instead of 13 (NIR without its key)",
        )
    _check_nir_characters(nir)
    return 97 - _nir_number(nir) % 97


def validate_nir(value: str) -> str:
    """Validate a 15-character NIR (INS matricule) and return it normalised: no spaces, 2A/2B uppercase."""
    # Nearly every NIR a registry or a client sends is 15 ASCII digits with nothing to normalise: sex, birth
    # month and key checked directly, the same answer as the full checks (tests/fhir/test_identifiers.py
    # compares them), for a fraction of their time (the registry import checks 1.3 NIRs per row).
    if isinstance(value, str) and len(value) == 15 and value.isascii() and value.isdigit():
        month = value[3:5]
        if (
            value[0] in "12"
            and ("01" <= month <= "12" or month >= "20")
            and 97 - int(value[:13]) % 97 == int(value[13:])
        ):
            return value
    return checked_nir(value)


def checked_nir(value: str) -> str:
    """`validate_nir` without its fast path: every check, with the precise error."""
    nir = _compact(value, "NIR")
    if len(nir) != 15:
        fr_hint, en_hint = (
            (" (clé de contrôle absente ?)", " (check key missing?)") if len(nir) == 13 else ("", "")
        )
        raise IdentifierError(
            f"longueur incorrecte : {len(nir)} caractères au lieu de 15{fr_hint}",
            f"wrong length: {len(nir)} characters instead of 15{en_hint}",
        )
    _check_nir_structure(nir)
    expected = 97 - _nir_number(nir) % 97
    got = int(nir[13:])
    if got != expected:
        raise IdentifierError(
            f"clé de contrôle NIR incorrecte : attendu {expected:02d}, reçu {nir[13:]}",
            f"wrong NIR key: expected {expected:02d}, got {nir[13:]}",
        )
    # Belt and braces: everything above implies the published regex.
    if not _NIR_RE.match(nir):
        raise IdentifierError("NIR mal formé", "malformed NIR")
    return nir


def make_nir(nir13: str) -> str:
    """Append the check key to a 13-character NIR (for tests and demo data); the result validates."""
    nir = _compact(nir13, "NIR")
    return validate_nir(f"{nir}{nir_key(nir):02d}")


# RPPS: 11 digits (identifier-systems.json: "N° RPPS (11 chiffres)"). A Luhn check digit is often said to
# end the number, and real numbers such as 10005173140 and the ANS test number 99700218896 pass it, but no
# authoritative source for the rule was found, and fr-core's own example Practitioner uses 10101201234,
# which fails it. So only the format is checked, to avoid refusing numbers the directory really issues.
def validate_rpps(value: str) -> str:
    """Validate an RPPS number (11 digits, format only) and return it without spaces."""
    rpps = _compact(value, "numéro RPPS")
    if not _RPPS_RE.match(rpps):
        raise IdentifierError(
            f"numéro RPPS « {_short(rpps)} » invalide : 11 chiffres attendus",
            f"invalid RPPS number '{_short(rpps)}': 11 digits expected",
        )
    return rpps


# FINESS: 9 characters, a département code (2 digits, or 2A/2B) then 7 digits. The last digit is said to be
# a check digit, but its algorithm could not be confirmed from a published source: format only.
def validate_finess(value: str) -> str:
    """Validate a FINESS number (9 characters, format only) and return it normalised."""
    finess = _compact(value, "numéro FINESS")
    if not _FINESS_RE.match(finess):
        raise IdentifierError(
            f"numéro FINESS « {_short(finess)} » invalide : 9 caractères attendus "
            "(2 chiffres ou 2A/2B, puis 7 chiffres)",
            f"invalid FINESS number '{_short(finess)}': 9 characters expected "
            "(2 digits or 2A/2B, then 7 digits)",
        )
    return finess


def validate_idnps(value: str) -> str:
    """Validate an IDNPS (idNat_PS): a type prefix then the number (identifier-systems.json IDNPS).

    "8" + RPPS and "0" + ADELI (9 characters) are checked in full. The other prefixes carry a structure
    number followed by an internal identifier whose format is not published in our sources: only the
    presence of something after the prefix is checked (fr-core: the value is taken from the directory,
    not built by software).
    """
    idnps = _compact(value, "IDNPS")
    if not idnps:
        raise IdentifierError("IDNPS vide", "empty IDNPS")
    prefix, number = idnps[0], idnps[1:]
    if prefix not in _IDNPS_PREFIXES:
        known = ", ".join(f"{p} ({label})" for p, label in _IDNPS_PREFIXES.items())
        raise IdentifierError(
            f"préfixe IDNPS « {prefix} » inconnu : attendu {known}",
            f"unknown IDNPS prefix '{prefix}': expected {known}",
        )
    if not number:
        raise IdentifierError(
            f"IDNPS incomplet : rien après le préfixe {prefix}",
            f"incomplete IDNPS: nothing after prefix {prefix}",
        )
    if prefix == "8":
        try:
            validate_rpps(number)
        except IdentifierError as error:
            raise IdentifierError(f"IDNPS 8 + RPPS : {error.fr}", f"IDNPS 8 + RPPS: {error.en}") from None
    elif prefix == "0" and not _ADELI_RE.match(number):
        raise IdentifierError(
            f"IDNPS 0 + ADELI : numéro ADELI « {_short(number)} » invalide : 9 caractères attendus",
            f"IDNPS 0 + ADELI: invalid ADELI number '{_short(number)}': 9 characters expected",
        )
    return idnps


def validate_idnst(value: str) -> str:
    """Validate an IDNST (idNat_Struct) and return it without spaces.

    The prefixes (1 FINESS, 2 SIREN, 3 SIRET, 0/4 rang) are optional: identifier-systems.json lists an
    unprefixed technical identifier too, so a value cannot be parsed by its first digit without risking
    the refusal of a valid technical identifier. Only non-emptiness and printable characters are checked.
    """
    idnst = _compact(value, "IDNST")
    if not idnst:
        raise IdentifierError("IDNST vide", "empty IDNST")
    if not idnst.isprintable():
        raise IdentifierError(
            "IDNST : caractère de contrôle non autorisé", "IDNST: control character not allowed"
        )
    return idnst


def _short(value: str, limit: int = 30) -> str:
    shown = value if len(value) <= limit else value[: limit - 1] + "…"
    return shown if shown.isprintable() else repr(shown)


_VALIDATORS = {
    INS_NIR: validate_nir,
    INS_NIR_TEST: validate_nir,
    INS_NIR_DEMO: validate_nir,
    RPPS: validate_rpps,
    IDNPS: validate_idnps,
    FINESS: validate_finess,
    IDNST: validate_idnst,
}

# Human names of the systems, for messages.
SYSTEM_LABELS = {
    INS_NIR: "INS-NIR",
    INS_NIR_TEST: "INS-NIR-TEST",
    INS_NIR_DEMO: "INS-NIR-DEMO",
    INS_NIA: "INS-NIA",
    RPPS: "RPPS",
    IDNPS: "IDNPS",
    FINESS: "FINESS",
    IDNST: "IDNST",
}


def explain_identifier(system: str, value: str) -> IdentifierError | None:
    """The IdentifierError of ``value`` under the rules of ``system`` (its ``fr``/``en`` halves), or None
    when it is valid or the system has no rule here (unknown systems; INS-NIA, whose format is not
    verified)."""
    validator = _VALIDATORS.get(system)
    if validator is None:
        return None
    try:
        validator(value)
    except IdentifierError as error:
        return error
    return None


def check_identifier(system: str, value: str) -> str | None:
    """Check ``value`` against the rules of ``system``: the error message, or None (see
    explain_identifier)."""
    error = explain_identifier(system, value)
    return None if error is None else error.message
