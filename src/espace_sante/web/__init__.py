"""The portals: server-rendered pages (Jinja2, autoescaped) in French or English (`i18n.py`), phone first, no
inline script or style (the CSP forbids them), every page usable without JavaScript. By audience: `account/`
(sign-in, account security, connected apps and their consent page), `activation/` (the notice's code),
`holder/` (her space, or a child's as representative: home, documents, sharing, history, notifications); what
they share is `templating.py`, `forms.py`, `messages.py`, `uploads.py` and `portal.py` (service errors as
pages). docs/architecture.md, "Where does X live"."""
