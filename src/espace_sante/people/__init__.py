"""People and sign-in: who a person is to the access policy, and how they prove it.

- `actors`: from a national identifier (INS, RPPS, an operator's login) to the policy's `Actor`.
- `accounts`, `passwords`, `totp`, `passkeys`: accounts and their credentials (SECURITY V2).
- `signin`: password then second factor; `federation`: FranceConnect+ and Pro Santé Connect (OpenID Connect).
- `sessions`: the portals' server-side sessions (SECURITY V3); `stepup`: a fresh proof before what cannot be
  undone.
- `ratelimit`, `devices`: limits on guessing, per login and source, and the browsers trusted after a sign-in."""
