"""The insurer's registry of beneficiaries: reading it (rows.py), its rejects (rejects.py), importing it
(importer.py). docs/registry-format.md."""
