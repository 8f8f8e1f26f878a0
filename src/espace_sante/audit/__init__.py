"""The trace: writing a record with each action (`trace`), sealing chain heads (`seal`, `chains`), checking the
chains (`verify`), and showing records in plain words (`wording`) and as FHIR AuditEvent (`fhir`). The record's
format and its SQL are in `storage/audit.py`."""
