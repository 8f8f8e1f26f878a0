"""OAuth 2 and SMART on FHIR: machine clients, apps a holder connects, professionals' software.

- `clients`: registration and client authentication; `backend`: SMART Backend Services assertions.
- `authorize`: the authorization endpoint's rules and the person's consent (SMART App Launch).
- `tokens`: the token endpoint; `grants`: what a person allowed a client, and its end.
- `bearer`: from a bearer token to its actor; `introspection`: RFC 7662 and RFC 7009.
- `devtokens`: development tokens for the demo's people."""
