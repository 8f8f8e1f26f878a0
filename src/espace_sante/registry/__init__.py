"""The insurer's registry of beneficiaries: reading it (rows.py); importing it comes next (provisioning issue)."""
