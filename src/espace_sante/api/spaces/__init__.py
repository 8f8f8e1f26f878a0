"""The lifecycle of a space, as an API (holder and operators)."""
