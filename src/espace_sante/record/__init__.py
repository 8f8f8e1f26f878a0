"""The shared medical record as FHIR R4: every read, search, write and history of a space's resources.

- `interactions`: the one dispatcher of FHIR interactions, for an HTTP request and for each Bundle entry alike;
  it picks the rule of the resource type.
- `resources`: the generic rule (the policy's decision, validation, the write path, search, history), and its
  public functions that run inside a caller's transaction (`create_in`, `read_in`, `search_in`, ...).
- `bundles`: batch and transaction Bundles (FHIR http.html#transaction), entries sent through `interactions`.
- `documents/`: the document rules (IHE MHD in the French PDSm profile: ITI-65, ITI-67, ITI-68, ITI-105, metadata
  updates, hidden results, content in the blob store).
- `auditevents`: the AuditEvent rule, a read-only view of the trace."""
