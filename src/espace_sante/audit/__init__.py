"""The trace: what is recorded (record.py), how records chain (chain.py), and how heads are sealed (seal.py)."""
