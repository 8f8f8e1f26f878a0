"""Domain errors. Services and parsers raise these; one handler in the API turns them into an
OperationOutcome with the right HTTP status (STYLE habit 9)."""

from __future__ import annotations

from dataclasses import dataclass, field

# FHIR IssueType codes (http://hl7.org/fhir/R4/valueset-issue-type.html) used here.
IssueCode = str


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue: what went wrong, and where (a FHIRPath-like expression)."""

    diagnostics: str
    code: IssueCode = "invalid"
    severity: str = "error"
    expression: str | None = None


@dataclass
class FhirError(Exception):
    """Base of every error that becomes an OperationOutcome. `status` is the HTTP status."""

    message: str
    status: int = 400
    code: IssueCode = "invalid"
    expression: str | None = None
    issues: list[Issue] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def all_issues(self) -> list[Issue]:
        if self.issues:
            return self.issues
        return [Issue(self.message, self.code, "error", self.expression)]


class BadRequest(FhirError):
    """400: the request cannot be understood (bad JSON, bad search parameter...)."""


class InvalidResource(FhirError):
    """422 Unprocessable Entity: a well-formed resource that breaks a rule (FHIR http.html#2.21.0.8)."""

    def __init__(self, message: str, *, expression: str | None = None, issues: list[Issue] | None = None):
        super().__init__(
            message, 422, "processing" if issues is None else "invalid", expression, issues or []
        )


class NotFound(FhirError):
    def __init__(self, message: str = "Ressource introuvable / resource not found"):
        super().__init__(message, 404, "not-found")


class Gone(FhirError):
    def __init__(self, message: str = "Ressource supprimée / resource deleted"):
        super().__init__(message, 410, "deleted")


class Conflict(FhirError):
    def __init__(self, message: str):
        super().__init__(message, 409, "conflict")


class PreconditionFailed(FhirError):
    def __init__(self, message: str):
        super().__init__(message, 412, "conflict")


class Unauthorized(FhirError):
    def __init__(self, message: str = "Authentification requise / authentication required"):
        super().__init__(message, 401, "login")


class Forbidden(FhirError):
    def __init__(self, message: str):
        super().__init__(message, 403, "forbidden")


class MethodNotAllowed(FhirError):
    def __init__(self, message: str):
        super().__init__(message, 405, "not-supported")


class PayloadTooLarge(FhirError):
    def __init__(self, message: str):
        super().__init__(message, 413, "too-costly")


class TooManyRequests(FhirError):
    """429: a quota is spent for now; `retry_after` is the number of seconds until it is given back (the
    `Retry-After` header, RFC 9110 section 10.2.3)."""

    def __init__(self, message: str, *, retry_after: int, issues: list[Issue] | None = None):
        super().__init__(message, 429, "throttled", None, issues or [])
        self.retry_after = max(1, retry_after)


class UnsupportedMediaType(FhirError):
    def __init__(self, message: str):
        super().__init__(message, 415, "not-supported")
