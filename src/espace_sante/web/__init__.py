"""The portals: server-rendered pages (Jinja2, autoescaped), French first, phone first, no inline script or
style (the CSP forbids them): sign-in and account security (`auth.py`), and the OAuth consent page."""
