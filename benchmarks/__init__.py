"""`make bench`: load a dataset into a real `espace-sante serve`, then measure it over loopback HTTP against a
bare ASGI ceiling on the same PostgreSQL. Entry point: `python -m benchmarks.run` (see benchmarks/README.md)."""
