"""Access rights API."""
