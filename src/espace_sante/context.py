"""The request context: built once per request (or job, or command) and passed to every service call, so
that the actor, and later whom they act for and the access decision, reach storage without rework."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from espace_sante.access.actors import SYSTEM, Actor

if TYPE_CHECKING:
    from espace_sante.content.checks import Checked
    from espace_sante.runtime import Runtime


@dataclass
class Context:
    runtime: Runtime
    actor: Actor
    request_id: str = field(default_factory=lambda: secrets.token_hex(8))
    #: Prefer: handling=strict (FHIR search.html#errors): unknown search parameters are errors.
    strict: bool = False
    #: Content accepted during this request, by Binary id (record/documents/): a submission's documents are
    #: checked against the hash, size and type of the content sent with them, and its total size is bounded.
    deposits: dict[str, Checked] = field(default_factory=dict)
    #: Objects this request put in the blob store (space, blob): any left unrecorded when it ends (a refused
    #: submission, a retried transaction) is deleted at once rather than after the orphan grace period.
    uploads: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)

    @classmethod
    def system(cls, runtime: Runtime) -> Context:
        return cls(runtime, SYSTEM)
