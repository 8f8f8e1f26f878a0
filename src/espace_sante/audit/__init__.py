"""The trace: what is recorded and how records chain (record.py), how heads are sealed (seal.py), how a
chain is checked (verify.py)."""
