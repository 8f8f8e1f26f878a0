"""Parsing a FHIR R4 search request (http://hl7.org/fhir/R4/search.html) into a typed AST.

The input is the list of (name, value) pairs of the query string or of a POST form body, already
URL-decoded.  Nothing here touches the database: storage/ turns the AST into SQL over the index tables.

Semantics (R4 search.html#combining): each pair is one clause and clauses are ANDed; the values of one
pair, separated by unescaped commas, are ORed.  Malformed values are always errors.

Unknown parameters (search.html#errors, "handling errors"): with ``strict`` (the ``Prefer:
handling=strict`` header) every one is an error.  Otherwise a plain unknown name is ignored and reported in
``SearchRequest.ignored``, but only where dropping it cannot widen what the client meant (issue 16): an
unsupported modifier (search.html#modifiers: "servers SHALL reject any search request that contains a
search parameter with an unsupported modifier"), a chain whose head or target parameter is unknown, and a
standard filter we do not implement (``_has``, ``_tag``...) are always errors, and so is any unknown
parameter of a search that names a patient (``patient=``, ``patient.identifier=``...) or of a search whose
caller must name one (``refuse_unknown``: a professional's DocumentReference search, ITI-67): there a
dropped ``patient.identifer`` would answer with every patient's documents.  The standard parameters that
only shape the answer (``_elements``, ``_contained``: ``dropped_filters`` leaves them out) choose no rows, and
are ignored and reported there too.  Whether the caller reaches
more than one record is known only once the policy has decided: ``record.resources`` then refuses the
ignored parameters with ``refuse_ignored``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Final, Literal, NoReturn, cast, get_args

from espace_sante.errors import BadRequest
from espace_sante.fhir.searchparams import (
    KNOWN_TYPES,
    SearchParam,
    is_type_name,
    is_valid_id,
    normalize_text,
    params_for,
    parse_date_range,
    parse_reference,
)

# DoS bounds: more than this is refused with a 400.
MAX_CLAUSES: Final = 50
MAX_OR_VALUES: Final = 100
MAX_VALUE_LENGTH: Final = 2000
MAX_PAIRS: Final = 500
MAX_INCLUDES: Final = 20
_MAX_OFFSET: Final = 2**63 - 1  # a PostgreSQL bigint

Prefix = Literal["eq", "ne", "lt", "le", "gt", "ge", "sa", "eb", "ap"]
Summary = Literal["count", "true", "false", "text", "data"]
_PREFIXES: Final[frozenset[str]] = frozenset(get_args(Prefix))
_SUMMARIES: Final[frozenset[str]] = frozenset(get_args(Summary))
_TOTALS: Final = frozenset({"none", "estimate", "accurate"})
_JSON_FORMATS: Final = frozenset({"json", "application/fhir+json", "application/json"})
# Standard R4 parameters this server does not implement (search.html#all): those that choose which resources
# match are refused (ignoring them widens the result); those that only shape the answer may be ignored.
_UNSUPPORTED_FILTERS: Final = frozenset(
    {"_has", "_text", "_content", "_list", "_query", "_filter", "_tag", "_profile", "_security", "_source"}
)
_UNSUPPORTED: Final = frozenset({"_elements", "_contained", "_containedType"})
_SINGLETONS: Final = frozenset({"_count", "_offset", "_sort", "_summary", "_total", "_format", "_pretty"})
# Modifiers allowed per type (search.html#modifiers); reference type modifiers (":Patient") are extra.
_MODIFIERS: Final[dict[str, frozenset[str]]] = {
    "string": frozenset({"exact", "contains", "missing"}),
    "token": frozenset({"missing", "not"}),
    "uri": frozenset({"missing"}),
    "reference": frozenset({"missing"}),
    "date": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
    "number": frozenset({"missing"}),
}
_SORTABLE: Final = frozenset({"date", "string", "token"})


class SearchError(BadRequest):
    """A search request that cannot be honoured (HTTP 400). The message is French, then English."""


@dataclass(frozen=True)
class TokenQuery:
    """``code`` (any_system), ``|code`` (system None: no system), ``sys|code``, ``sys|`` (code None)."""

    system: str | None
    code: str | None
    any_system: bool


@dataclass(frozen=True)
class StringQuery:
    text: str
    mode: Literal["prefix", "exact", "contains"]


@dataclass(frozen=True)
class DateQuery:
    """The value's implicit range [low, high) in UTC, compared with ``prefix`` (search.html#prefix)."""

    prefix: Prefix
    low: datetime
    high: datetime


@dataclass(frozen=True)
class ReferenceQuery:
    target_type: str | None
    target_id: str


@dataclass(frozen=True)
class QuantityQuery:
    """``system``/``code`` None means "any"; ``5.4||mg`` gives system None and code "mg"."""

    prefix: Prefix
    value: Decimal
    system: str | None
    code: str | None


@dataclass(frozen=True)
class NumberQuery:
    """``value`` keeps the precision written (Decimal("100") vs Decimal("1.00E+2")), search.html#number."""

    prefix: Prefix
    value: Decimal


QueryValue = TokenQuery | StringQuery | DateQuery | ReferenceQuery | QuantityQuery | NumberQuery


@dataclass(frozen=True)
class Chain:
    """One level of chaining (search.html#chaining): ``param`` is the reference parameter followed."""

    param: SearchParam
    target_type: str
    inner: Clause


@dataclass(frozen=True)
class Clause:
    """One parameter of the request: an OR of ``values``; a chained clause has no values of its own.

    ``param`` is None for the common ``_id`` (TokenQuery values) and ``_lastUpdated`` (DateQuery).
    ``missing`` is set (and ``values`` empty) for ``:missing=true|false``.
    """

    name: str
    param: SearchParam | None
    modifier: str | None
    values: tuple[QueryValue, ...]
    chain: Chain | None = None
    missing: bool | None = None


@dataclass(frozen=True)
class SortKey:
    name: str
    param: SearchParam | None
    descending: bool


@dataclass(frozen=True)
class Include:
    source_type: str
    param: SearchParam
    target_type: str | None
    iterate: bool


@dataclass
class SearchRequest:
    resource_type: str
    clauses: list[Clause] = field(default_factory=list)
    count: int = 20
    offset: int = 0
    sort: list[SortKey] = field(default_factory=list)
    summary: Summary | None = None
    total: str | None = None
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    echo: list[tuple[str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


def _short(s: str) -> str:
    return s if len(s) <= 80 else s[:77] + "..."


def _fail(name: str, fr: str, en: str, code: str = "invalid") -> NoReturn:
    raise SearchError(f"{fr} / {en}", 400, code, _short(name))


def _bad_value(name: str, value: str, why_fr: str, why_en: str) -> NoReturn:
    v = _short(value)
    _fail(
        name,
        f"Valeur invalide pour le paramètre '{_short(name)}' : '{v}' ({why_fr})",
        f"invalid value for parameter '{_short(name)}': '{v}' ({why_en})",
    )


class _Ignore(Exception):
    """Internal: the pair is unknown/unsupported and the request is lenient."""


# --------------------------------------------------------------------------------------------------
# Escaping (search.html#escaping): "\," "\|" "\$" "\\" are literal characters
# --------------------------------------------------------------------------------------------------


def _split(value: str, sep: str, maxsplit: int = -1) -> list[str]:
    """Split on unescaped `sep`, keeping escapes (they are removed by _unescape)."""
    if "\\" not in value:
        return value.split(sep, maxsplit)
    parts: list[str] = []
    cur: list[str] = []
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c == "\\" and i + 1 < n:
            cur.append(value[i : i + 2])
            i += 2
            continue
        if c == sep and maxsplit != len(parts):
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(s: str) -> str:
    if "\\" not in s:
        return s
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n and s[i + 1] in ",|$\\":
            out.append(s[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


# --------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------


def _prefix(name: str, raw: str) -> tuple[Prefix, str]:
    """Split a search prefix (search.html#prefix) from a date/number/quantity value; "eq" by default."""
    if len(raw) >= 2 and raw[:2].isalpha():
        p = raw[:2]
        if p not in _PREFIXES:
            _bad_value(name, raw, "préfixe inconnu", "unknown prefix")
        return cast(Prefix, p), raw[2:]
    return "eq", raw


def _decimal(name: str, raw: str, text: str) -> Decimal:
    # FHIR decimals: no NaN/Infinity, no leading "+" is required; exponents are allowed (search.html#number).
    if not text or not all(c in "0123456789+-.eE" for c in text):
        _bad_value(name, raw, "nombre attendu", "number expected")
    try:
        d = Decimal(text)
    except InvalidOperation:
        _bad_value(name, raw, "nombre attendu", "number expected")
    if not d.is_finite() or abs(d.adjusted()) > 100:
        _bad_value(name, raw, "nombre hors limites", "number out of range")
    return d


def _date(name: str, raw: str) -> DateQuery:
    prefix, text = _prefix(name, raw)
    r = parse_date_range(text)
    if r is None:
        _bad_value(name, raw, "date attendue AAAA[-MM[-JJ[Thh:mm[:ss[.s]][Z|±hh:mm]]]]", "invalid date")
    return DateQuery(prefix, r[0], r[1])


def _token(name: str, raw: str) -> TokenQuery:
    parts = _split(raw, "|", 1)
    if len(parts) == 1:
        return TokenQuery(None, _unescape(raw), True)
    system, code = _unescape(parts[0]) or None, _unescape(parts[1]) or None
    if system is None and code is None:
        _bad_value(name, raw, "système ou code attendu", "system or code expected")
    return TokenQuery(system, code, False)


def _string(name: str, raw: str, modifier: str | None) -> StringQuery:
    text = _unescape(raw)
    if modifier == "exact":
        return StringQuery(text, "exact")
    norm = normalize_text(text)
    if not norm:
        _bad_value(name, raw, "texte vide", "empty text")
    return StringQuery(norm, "contains" if modifier == "contains" else "prefix")


def _reference(name: str, raw: str, param: SearchParam, type_modifier: str | None) -> ReferenceQuery:
    text = _unescape(raw)
    rtype: str | None
    if "/" in text:
        parsed = parse_reference(text)
        if parsed is None:
            _bad_value(name, raw, "référence Type/id attendue", "Type/id reference expected")
        rtype, rid = parsed
        if type_modifier is not None and rtype != type_modifier:
            _bad_value(name, raw, f"type autre que :{type_modifier}", f"type is not :{type_modifier}")
    else:
        if not is_valid_id(text):
            _bad_value(name, raw, "identifiant invalide", "invalid id")
        rtype, rid = type_modifier, text
    if rtype is not None and param.targets and rtype not in param.targets:
        _bad_value(name, raw, "type de cible non permis", "target type not allowed")
    if rtype is None and len(param.targets) == 1:
        rtype = param.targets[0]  # the only possible type: make it explicit for storage
    return ReferenceQuery(rtype, rid)


def _quantity(name: str, raw: str) -> QuantityQuery:
    prefix, rest = _prefix(name, raw)
    parts = _split(rest, "|", 2)
    value = _decimal(name, raw, parts[0])
    system = code = None
    if len(parts) == 3:
        system, code = _unescape(parts[1]) or None, _unescape(parts[2]) or None
    elif len(parts) == 2:
        _bad_value(name, raw, "nombre|système|code attendu", "number|system|code expected")
    return QuantityQuery(prefix, value, system, code)


def _number(name: str, raw: str) -> NumberQuery:
    prefix, rest = _prefix(name, raw)
    return NumberQuery(prefix, _decimal(name, raw, rest))


# --------------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------------


@dataclass
class _Parser:
    resource_type: str
    strict: bool
    max_count: int
    req: SearchRequest
    #: Reference parameters of the searched type that take `:identifier` (see parse_search).
    by_identifier: frozenset[str] = frozenset()
    or_values: int = 0
    seen: set[str] = field(default_factory=set)

    def ignore(self, name: str, fr: str, en: str, code: str = "not-supported") -> NoReturn:
        if self.strict:
            _fail(name, fr, en, code)
        raise _Ignore

    def unknown(self, name: str, rtype: str, *, always: bool = False) -> NoReturn:
        """An unknown parameter: ignored when lenient, unless `always` (it cannot be dropped safely)."""
        n = _short(name)
        fr = f"Paramètre de recherche inconnu pour {rtype} : '{n}'"
        en = f"unknown search parameter for {rtype}: '{n}'"
        if always:
            _fail(name, fr, en, "not-supported")
        self.ignore(name, fr, en)

    def unknown_modifier(self, name: str) -> NoReturn:
        """Always an error (search.html#modifiers): `:exact` dropped from `patient.identifier:exact` would
        leave no filter at all."""
        n = _short(name)
        _fail(
            name, f"Modificateur non pris en charge : '{n}'", f"unsupported modifier: '{n}'", "not-supported"
        )

    def unknown_chain(self, name: str, fr: str, en: str) -> NoReturn:
        """A chain that cannot be followed is always an error: ignored, it would drop the patient filter."""
        _fail(name, fr, en, "not-supported")

    def split_values(self, name: str, value: str) -> list[str]:
        values = _split(value, ",")
        if any(not v for v in values):
            _bad_value(name, value, "valeur vide", "empty value")
        self.or_values += len(values)
        if self.or_values > MAX_OR_VALUES:
            _fail(
                name,
                f"Trop de valeurs de recherche (plus de {MAX_OR_VALUES})",
                f"too many search values (more than {MAX_OR_VALUES})",
                "too-costly",
            )
        return values

    # -- one pair ----------------------------------------------------------------------------------

    def pair(self, name: str, value: str) -> tuple[str, str] | None:
        """Parse one pair into the request; returns what to echo in the links (None: nothing)."""
        head, dot, chain_rest = name.partition(".")
        base, colon, modifier = head.partition(":")
        mod = modifier if colon else None
        if base.startswith("_"):
            if dot:
                self.unknown(name, self.resource_type, always=True)
            return self.special(name, base, mod, value)
        if dot:
            clause = self.chained(name, base, mod, chain_rest, value)
        else:
            clause = self.clause(name, self.resource_type, base, mod, value)
        self.add_clause(name, clause)
        return name, value

    def add_clause(self, name: str, clause: Clause) -> None:
        if len(self.req.clauses) >= MAX_CLAUSES:
            _fail(
                name,
                f"Trop de critères de recherche (plus de {MAX_CLAUSES})",
                f"too many search criteria (more than {MAX_CLAUSES})",
                "too-costly",
            )
        self.req.clauses.append(clause)

    def clause(
        self, full: str, rtype: str, base: str, mod: str | None, value: str, *, chained: bool = False
    ) -> Clause:
        """A clause on a parameter of `rtype` (the searched type, or the target of a chain: `chained`)."""
        if base == "_id":
            if mod is not None:
                self.unknown_modifier(full)
            ids = self.split_values(full, value)
            for v in ids:
                if not is_valid_id(v):
                    _bad_value(full, v, "identifiant invalide", "invalid id")
            return Clause("_id", None, None, tuple(TokenQuery(None, v, True) for v in ids))
        if base == "_lastUpdated":
            if mod is not None:
                self.unknown_modifier(full)
            return Clause(base, None, None, tuple(_date(full, v) for v in self.split_values(full, value)))
        param = params_for(rtype).get(base)
        if param is None:
            # A modifier says the client meant a filter of a kind we cannot honour: never silently dropped.
            self.unknown(full, rtype, always=chained or mod is not None)
        if mod == "identifier" and param.type == "reference" and not chained and base in self.by_identifier:
            # R4 search.html#reference, modifier `identifier` (search-modifier-code: "the search parameter
            # applies to the identifier on the resource, not the reference"): the value is a token,
            # `system|value`, matched against Reference.identifier.
            return Clause(base, param, mod, tuple(_token(full, v) for v in self.split_values(full, value)))
        type_modifier: str | None = None
        if mod is not None and mod not in _MODIFIERS[param.type]:
            allowed = not param.targets or mod in param.targets
            if param.type == "reference" and is_type_name(mod) and allowed:
                type_modifier = mod  # search.html#reference: subject:Patient=123
            else:
                self.unknown_modifier(full)
        if mod == "missing":
            if value not in ("true", "false"):
                _bad_value(full, value, "true ou false attendu", "true or false expected")
            self.or_values += 1
            return Clause(base, param, mod, (), missing=value == "true")
        raws = self.split_values(full, value)
        t = param.type
        values: tuple[QueryValue, ...]
        if t == "token" or t == "uri":
            values = tuple(_token(full, v) for v in raws)
        elif t == "string":
            values = tuple(_string(full, v, mod) for v in raws)
        elif t == "date":
            values = tuple(_date(full, v) for v in raws)
        elif t == "reference":
            values = tuple(_reference(full, v, param, type_modifier) for v in raws)
        elif t == "quantity":
            values = tuple(_quantity(full, v) for v in raws)
        else:
            values = tuple(_number(full, v) for v in raws)
        return Clause(base, param, mod, values)

    def chained(self, full: str, base: str, mod: str | None, rest: str, value: str) -> Clause:
        """``ref[:Type].inner[:modifier]=value``, one level only (search.html#chaining)."""
        param = params_for(self.resource_type).get(base)
        if param is None or param.type != "reference":
            self.unknown(full, self.resource_type, always=True)
        if "." in rest:
            self.unknown_chain(
                full,
                f"Chaînage sur plusieurs niveaux non pris en charge : '{_short(full)}'",
                f"multi-level chaining is not supported: '{_short(full)}'",
            )
        if mod is not None:
            if not is_type_name(mod) or (param.targets and mod not in param.targets):
                self.unknown_modifier(full)
            target = mod
        else:
            inner_base = rest.partition(":")[0]
            candidates = [t for t in param.targets if inner_base in params_for(t) or inner_base == "_id"]
            if len(candidates) != 1:
                if not candidates:
                    self.unknown(full, " | ".join(param.targets) or "Any", always=True)
                _fail(
                    full,
                    f"Chaînage ambigu, précisez le type : '{base}:{candidates[0]}.{rest}'",
                    f"ambiguous chain, give the target type: '{base}:{candidates[0]}.{rest}'",
                )
            target = candidates[0]
        if target not in KNOWN_TYPES:
            self.unknown(full, target, always=True)
        inner_base, colon, inner_mod = rest.partition(":")
        inner = self.clause(full, target, inner_base, inner_mod if colon else None, value, chained=True)
        if inner.missing is not None:
            self.unknown_chain(
                full,
                f":missing non pris en charge dans un chaînage : '{_short(full)}'",
                f":missing is not supported in a chain: '{_short(full)}'",
            )
        return Clause(base, param, mod, (), chain=Chain(param, target, inner))

    # -- parameters starting with "_" (search.html#all, #count, #sort, #include, #summary) -----------

    def special(self, name: str, base: str, mod: str | None, value: str) -> tuple[str, str] | None:
        req = self.req
        if base in ("_id", "_lastUpdated"):
            self.add_clause(name, self.clause(name, self.resource_type, base, mod, value))
            return name, value
        if base in ("_include", "_revinclude"):
            if mod not in (None, "iterate"):
                self.unknown_modifier(name)
            inc = self.include(name, value, rev=base == "_revinclude", iterate=mod == "iterate")
            if len(req.includes) + len(req.revincludes) >= MAX_INCLUDES:
                _fail(name, f"Trop d'inclusions (plus de {MAX_INCLUDES})", "too many includes", "too-costly")
            (req.revincludes if base == "_revinclude" else req.includes).append(inc)
            return name, value
        if base in _UNSUPPORTED_FILTERS:
            _fail(
                name,
                f"Paramètre de recherche non pris en charge : '{_short(name)}'",
                f"unsupported search parameter: '{_short(name)}'",
                "not-supported",
            )
        if base in _UNSUPPORTED:
            if mod is not None:
                self.unknown_modifier(name)
            self.ignore(
                name,
                f"Paramètre de recherche non pris en charge : '{_short(name)}'",
                f"unsupported search parameter: '{_short(name)}'",
            )
        if base not in _SINGLETONS:
            self.unknown(name, self.resource_type, always=mod is not None)
        if mod is not None:
            self.unknown_modifier(name)
        if base in self.seen:
            _fail(name, f"Paramètre '{base}' répété", f"parameter '{base}' repeated")
        self.seen.add(base)
        echoed = value
        if base == "_count":
            req.count = min(self.non_negative(name, value, self.max_count), self.max_count)
            echoed = str(req.count)
        elif base == "_offset":
            req.offset = self.non_negative(name, value, _MAX_OFFSET)
            return None  # our paging cursor: the links builder sets it itself
        elif base == "_sort":
            req.sort = self.sort(name, value)
        elif base == "_summary":
            if value not in _SUMMARIES:
                _bad_value(name, value, "true|false|text|data|count attendu", "true|false|text|data|count")
            req.summary = cast(Summary, value)
        elif base == "_total":
            if value not in _TOTALS:
                _bad_value(name, value, "none|estimate|accurate attendu", "none|estimate|accurate expected")
            req.total = value
        elif base == "_format" and value.split(";", 1)[0].strip().lower() not in _JSON_FORMATS:
            # http.html#mime-type: only JSON is served; MIME parameters (";fhirVersion=4.0") are allowed.
            _fail(
                name,
                f"Format non pris en charge : '{_short(value)}' (JSON seulement)",
                f"unsupported format: '{_short(value)}' (JSON only)",
                "not-supported",
            )
        # _pretty: accepted, ignored (JSON output is compact)
        return name, echoed

    @staticmethod
    def non_negative(name: str, value: str, limit: int) -> int:
        if not value.isascii() or not value.isdigit() or len(value) > 19:
            _bad_value(name, value, "entier positif ou nul attendu", "non-negative integer expected")
        n = int(value)
        return n if n <= limit else limit

    def sort(self, name: str, value: str) -> list[SortKey]:
        keys: list[SortKey] = []
        params = params_for(self.resource_type)
        for item in value.split(","):
            desc = item.startswith("-")
            key = item[1:] if desc else item
            if key in ("_id", "_lastUpdated"):
                keys.append(SortKey(key, None, desc))
                continue
            p = params.get(key)
            if p is None or p.type not in _SORTABLE:
                k = _short(key)
                _bad_value(name, value, f"tri impossible sur '{k}'", f"cannot sort on '{k}'")
            keys.append(SortKey(key, p, desc))
        if len(keys) > 10:
            _bad_value(name, value, "trop de clés de tri", "too many sort keys")
        return keys

    def include(self, name: str, value: str, *, rev: bool, iterate: bool) -> Include:
        """``Source:param[:Target]`` (search.html#include); "*" is refused."""
        parts = value.split(":")
        if len(parts) not in (2, 3) or "*" in parts:
            _bad_value(name, value, "Type:paramètre[:Cible] attendu", "Type:param[:Target] expected")
        source, pname = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        p = params_for(source).get(pname)
        if p is None or p.type != "reference":
            _bad_value(name, value, "paramètre de référence inconnu", "unknown reference parameter")
        if target is not None and (not is_type_name(target) or (p.targets and target not in p.targets)):
            _bad_value(name, value, "type de cible non permis", "target type not allowed")
        if not iterate:
            rtype = self.resource_type
            if not rev and source != rtype:
                _bad_value(name, value, f"la source doit être {rtype}", f"source must be {rtype}")
            if rev and ((target is not None and target != rtype) or (p.targets and rtype not in p.targets)):
                _bad_value(name, value, f"ne référence pas {rtype}", f"does not reference {rtype}")
        return Include(source, p, target, iterate)


def names_patient(request: SearchRequest) -> bool:
    """Whether the search is limited to named patients: a reference that may be a Patient
    (`patient=`, `subject=Patient/…`, `subject=<id>`), a chain to Patient (`patient.identifier=`), or a
    Patient search by `_id` or `identifier`."""
    for clause in request.clauses:
        if request.resource_type == "Patient" and clause.name in ("_id", "identifier"):
            return True
        if clause.chain is not None:
            if clause.chain.target_type == "Patient":
                return True
            continue
        param = clause.param
        if param is None or param.type != "reference":
            continue
        if param.targets and "Patient" not in param.targets:  # no targets: any type, a Patient among them
            continue
        if any(isinstance(v, ReferenceQuery) and v.target_type in (None, "Patient") for v in clause.values):
            return True
    return False


def dropped_filters(req: SearchRequest) -> list[str]:
    """The ignored parameters that might have chosen what matches: every unknown name, but not the standard
    ones that only shape the answer (`_elements`, `_contained`...), which no caller's scope makes wider."""
    return [n for n in req.ignored if n.split(":", 1)[0] not in _UNSUPPORTED]


def refuse_ignored(req: SearchRequest, why_fr: str, why_en: str, name: str | None = None) -> NoReturn:
    """A 400 naming an ignored parameter (`name`, else the first): dropping it would widen the answer."""
    name = req.ignored[0] if name is None else name
    n = _short(name)
    _fail(
        name,
        f"Paramètre de recherche inconnu ou non pris en charge : '{n}' ({why_fr})",
        f"unknown or unsupported search parameter: '{n}' ({why_en})",
        "not-supported",
    )


def parse_search(
    resource_type: str,
    pairs: Sequence[tuple[str, str]],
    *,
    strict: bool,
    default_count: int = 20,
    max_count: int = 200,
    refuse_unknown: bool = False,
    by_identifier: frozenset[str] = frozenset(),
) -> SearchRequest:
    """Parse the (name, value) pairs of a search on `resource_type`; raises SearchError (400).

    `refuse_unknown`: no unknown parameter is ignored (the caller must name the patient, ITI-67).
    `by_identifier`: the reference parameters whose `:identifier` modifier the caller's store matches (a
    Clause with that modifier and TokenQuery values); everywhere else the modifier stays refused, since the
    search index holds literal references only and would drop the filter."""
    if len(pairs) > MAX_PAIRS:
        _fail("", f"Trop de paramètres (plus de {MAX_PAIRS})", f"too many parameters (more than {MAX_PAIRS})")
    req = SearchRequest(resource_type, count=min(default_count, max_count))
    parser = _Parser(resource_type, strict, max_count, req, by_identifier)
    for name, value in pairs:
        if len(name) > MAX_VALUE_LENGTH or len(value) > MAX_VALUE_LENGTH:
            _fail(
                name,
                f"Paramètre trop long (plus de {MAX_VALUE_LENGTH} caractères) : '{_short(name)}'",
                f"parameter too long (more than {MAX_VALUE_LENGTH} characters): '{_short(name)}'",
                "too-costly",
            )
        if not name:
            _fail(name, "Nom de paramètre vide", "empty parameter name")
        if "\x00" in name or "\x00" in value:
            # No stored value holds U+0000 (PostgreSQL text cannot): a malformed request, not a 500.
            _fail(
                name.replace("\x00", ""),
                "Caractère nul (U+0000) interdit dans une recherche",
                "NUL character (U+0000) not allowed in a search",
            )
        try:
            echoed = parser.pair(name, value)
        except _Ignore:
            req.ignored.append(name)
            continue
        if echoed is not None:
            req.echo.append(echoed)
    # Only what could have chosen rows is refused: `_elements` and `_contained` shape the answer, so they stay
    # ignored and listed for everyone (search.html#errors lets a lenient server ignore them), patient named or not.
    dropped = dropped_filters(req)
    if dropped and refuse_unknown:
        refuse_ignored(req, "le patient doit être nommé", "the patient must be named", dropped[0])
    if dropped and names_patient(req):
        # The client filters one patient's data: a misspelt parameter must not answer with more than meant.
        refuse_ignored(req, "la recherche nomme un patient", "the search names a patient", dropped[0])
    return req
