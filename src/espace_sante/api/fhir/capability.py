"""The CapabilityStatement (GET /fhir/metadata), built from the same tables the server runs on: the supported
types, their search parameters and the interactions the routes implement, so it cannot drift from the code."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from espace_sante import __version__
from espace_sante.fhir.searchparams import params_for
from espace_sante.fhir.validation import RESOURCE_TYPES
from espace_sante.record.resources import READ_ONLY_TYPES
from espace_sante.settings import Settings

_WRITE = ("create", "update", "delete")
_READ = ("read", "vread", "history-instance", "history-type", "search-type")
#: AuditEvent is the trace rendered on the way out (record/auditevents.py): read and search-type only,
#: with the parameters that service implements, never _include or _revinclude.
_AUDIT_EVENT = "AuditEvent"
_AUDIT_DOCS = {
    "patient": "Required: the trace is listed one patient at a time (Patient/<id> or <id>)",
    "date": "When the event was recorded (eq, ne, lt, le, gt, ge, sa, eb; partial dates)",
    "action": "C, R, U, D or E (a search is E, as in IHE BALP)",
    "subtype": "The FHIR interaction (restful-interaction: read, vread, search-type, create, update, "
    "delete, history-instance, history-type)",
    "agent": "Who acted, recorded by identifier (RPPS for a professional): agent:identifier=system|value "
    "(search.html#reference, the identifier modifier), or Practitioner/<id>, matched by the RPPS of that "
    "directory entry; other literal references never match",
    "source": "Never matches: the observer is identified by identifier, not by a literal reference",
}
_SMART_EXT = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def _resource(rtype: str) -> dict[str, Any]:
    if rtype == _AUDIT_EVENT:
        return _audit_event()
    interactions = _READ if rtype in READ_ONLY_TYPES else (*_READ, *_WRITE)
    params = params_for(rtype)
    entry: dict[str, Any] = {
        "type": rtype,
        "interaction": [{"code": code} for code in interactions],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": False,
        "conditionalCreate": rtype not in READ_ONLY_TYPES,
        "conditionalRead": "not-supported",
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "referencePolicy": ["literal", "local", "enforced"],
        "searchInclude": [f"{rtype}:{p.name}" for p in params.values() if p.type == "reference"],
        "searchParam": [
            {"name": "_id", "type": "token"},
            {"name": "_lastUpdated", "type": "date"},
            *(
                {
                    "name": p.name,
                    "type": p.type,
                    **({"documentation": p.description} if p.description else {}),
                }
                for p in params.values()
            ),
        ],
    }
    if rtype == "DocumentReference":
        # PDSm metadata update (status, securityLabel, isArchived) and IHE MHD Document Responder.
        entry["interaction"].append({"code": "patch"})
        entry["supportedProfile"] = [
            "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-comprehensive-document-reference",
            "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-simplified-publish",
        ]
        entry["documentation"] = (
            "IHE MHD (PDSm) Document Recipient and Responder: ITI-65 as a transaction Bundle, ITI-105, ITI-67, "
            "ITI-68 as a read of Binary without a FHIR Accept header; see docs/documents.md"
        )
    if rtype == "Binary":
        entry["documentation"] = (
            "A document's content, checked from its bytes and encrypted outside the resource tables; read with "
            "a non-FHIR Accept header for the content itself (ITI-68: streamed, ETag, one byte range)"
        )
    revs = [
        f"{other}:{p.name}"
        for other in RESOURCE_TYPES
        for p in params_for(other).values()
        if p.type == "reference" and (not p.targets or rtype in p.targets) and other != _AUDIT_EVENT
    ]
    entry["searchRevInclude"] = revs
    return entry


def _audit_event() -> dict[str, Any]:
    return {
        "type": _AUDIT_EVENT,
        "documentation": "The trace (R1111-43) as IHE BALP-style AuditEvents, with a plain-words narrative "
        "in French and English. Read-only; a search must name its patient; newest first.",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "versioning": "no-version",
        "readHistory": False,
        "updateCreate": False,
        "conditionalCreate": False,
        "conditionalRead": "not-supported",
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchInclude": [],
        "searchRevInclude": [],
        "searchParam": [
            {"name": "_id", "type": "token"},
            {"name": "_lastUpdated", "type": "date", "documentation": "Same as date"},
            *(
                {
                    "name": p.name,
                    "type": p.type,
                    "documentation": _AUDIT_DOCS.get(p.name, p.description),
                }
                for p in params_for(_AUDIT_EVENT).values()
            ),
        ],
    }


@lru_cache(maxsize=4)
def _statement(base_url: str, fhir_base: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-24",
        "publisher": "espace-sante",
        "kind": "instance",
        "software": {"name": "espace-sante", "version": __version__},
        "implementation": {"description": "espace-sante FHIR R4 server", "url": fhir_base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": "OAuth 2 bearer tokens. Machine clients: client credentials with SMART system/ "
                    "scopes (v1 and v2 syntax) at the token endpoint.",
                    "extension": [
                        {
                            "url": _SMART_EXT,
                            "extension": [{"url": "token", "valueUri": f"{base_url}/oauth/token"}],
                        }
                    ],
                },
                "resource": [_resource(rtype) for rtype in RESOURCE_TYPES],
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                "searchParam": [
                    {"name": n, "type": t}
                    for n, t in (
                        ("_count", "number"),
                        ("_sort", "string"),
                        ("_include", "string"),
                        ("_revinclude", "string"),
                        ("_summary", "token"),
                        ("_total", "token"),
                    )
                ],
            }
        ],
    }


def statement(settings: Settings) -> dict[str, Any]:
    return _statement(settings.base_url.rstrip("/"), settings.fhir_base)


def smart_configuration(settings: Settings) -> dict[str, Any]:
    """SMART App Launch 2.2 section 2.0.1 (.well-known/smart-configuration)."""
    base = settings.base_url.rstrip("/")
    return {
        "issuer": base,
        "token_endpoint": f"{base}/oauth/token",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": [
            "system/*.read",
            "system/*.write",
            "system/*.*",
            "system/*.cruds",
            "system/*.rs",
        ],
        "capabilities": ["client-confidential-symmetric"],
        "code_challenge_methods_supported": ["S256"],
    }
