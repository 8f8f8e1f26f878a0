"""espace-sante: a national personal health space."""

__version__ = "0.1.0"
