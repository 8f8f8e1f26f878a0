-- OAuth 2 / SMART for people and software (issue 4, "Apps and professional software"; SECURITY V3 3.5.x and
-- "FHIR / IHE attacks" items 9 and 10). Outside spaces: clients, grants and tokens are account data. Every
-- secret, code and token is stored as a SHA-256 digest of a 256-bit random value.

-- What a client is and how it authenticates at the token endpoint (RFC 7591 `token_endpoint_auth_method`):
--   system    a feed or a professional's software acting as itself (client credentials, SMART Backend
--             Services), `system/` scopes only;
--   app       a referenced app a holder connects (authorization code + PKCE), `patient/` scopes;
--   software  a professional's software acting for the signed-in professional (authorization code + PKCE),
--             `user/` scopes.
-- `client_secret` covers client_secret_basic and client_secret_post; `private_key_jwt` needs a JWKS, stored or
-- at a registered https `jwks_uri`; `none` is a public app (PKCE is then its only proof).
ALTER TABLE oauth_client ALTER COLUMN secret_hash DROP NOT NULL;
ALTER TABLE oauth_client ADD COLUMN kind text NOT NULL DEFAULT 'system'
    CHECK (kind IN ('system', 'app', 'software'));
ALTER TABLE oauth_client ADD COLUMN auth_method text NOT NULL DEFAULT 'client_secret'
    CHECK (auth_method IN ('client_secret', 'private_key_jwt', 'none'));
ALTER TABLE oauth_client ADD COLUMN jwks jsonb;
ALTER TABLE oauth_client ADD COLUMN jwks_uri text;
ALTER TABLE oauth_client ADD COLUMN redirect_uris text[] NOT NULL DEFAULT '{}';
ALTER TABLE oauth_client ADD CONSTRAINT oauth_client_credentials CHECK (
    (auth_method = 'client_secret' AND secret_hash IS NOT NULL)
    OR (auth_method = 'private_key_jwt' AND (jwks IS NOT NULL OR jwks_uri IS NOT NULL))
    OR (auth_method = 'none' AND kind = 'app')
);

-- A person's authorisation of a client: a holder connecting an app (by INS), a professional allowing their
-- software (by RPPS). Withdrawing it (disconnecting the app) or a refresh-token reuse ends every token of the
-- grant at once. Kept after revocation for the record.
CREATE TABLE oauth_grant (
    grant_id        uuid PRIMARY KEY,
    client_id       text NOT NULL REFERENCES oauth_client (client_id) ON DELETE CASCADE,
    person_kind     text NOT NULL CHECK (person_kind IN ('holder', 'practitioner')),
    person_id       text NOT NULL,
    scope           text NOT NULL,
    granted_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    revoked_reason  text NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX oauth_grant_live ON oauth_grant (person_kind, person_id, client_id) WHERE revoked_at IS NULL;
CREATE INDEX oauth_grant_client ON oauth_grant (client_id);

-- Authorization codes (RFC 6749 4.1.2): single use, 60 s, bound to the client, the exact redirect_uri and the
-- PKCE S256 challenge (RFC 7636). `family` names the chain of tokens the code starts (a reused code revokes it).
CREATE TABLE oauth_code (
    code_hash       bytea PRIMARY KEY,
    grant_id        uuid NOT NULL REFERENCES oauth_grant (grant_id) ON DELETE CASCADE,
    client_id       text NOT NULL,
    redirect_uri    text NOT NULL,
    scope           text NOT NULL,
    code_challenge  text NOT NULL,
    acr             text NOT NULL DEFAULT '',
    family          uuid NOT NULL,
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz
);
CREATE INDEX oauth_code_expiry ON oauth_code (expires_at);

-- Refresh tokens, rotated on every use: `rotated_at` marks a token already exchanged. Presenting it again is a
-- theft signal (SECURITY FHIR item 10): the whole grant is revoked.
CREATE TABLE oauth_refresh (
    token_hash  bytea PRIMARY KEY,
    grant_id    uuid NOT NULL REFERENCES oauth_grant (grant_id) ON DELETE CASCADE,
    client_id   text NOT NULL,
    scope       text NOT NULL,
    acr         text NOT NULL DEFAULT '',
    family      uuid NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    rotated_at  timestamptz,
    revoked     boolean NOT NULL DEFAULT false
);
CREATE INDEX oauth_refresh_grant ON oauth_refresh (grant_id);
CREATE INDEX oauth_refresh_expiry ON oauth_refresh (expires_at);

-- Access tokens issued under a grant: revoked with it.
ALTER TABLE oauth_token ADD COLUMN grant_id uuid REFERENCES oauth_grant (grant_id) ON DELETE CASCADE;
ALTER TABLE oauth_token ADD COLUMN family uuid;
CREATE INDEX oauth_token_grant ON oauth_token (grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX oauth_token_family ON oauth_token (family) WHERE family IS NOT NULL;

-- `jti` of client assertions (RFC 7523 3, SMART Backend Services): each used once until it expires.
CREATE TABLE oauth_jti (
    client_id   text NOT NULL,
    jti         text NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX oauth_jti_expiry ON oauth_jti (expires_at);

-- OpenID Connect sign-in in progress with a national provider (FranceConnect+, Pro Santé Connect): the
-- browser holds a random secret (cookie), we its digest, the state, nonce and PKCE verifier. Single use, 10 min.
CREATE TABLE oidc_flow (
    flow_hash      bytea PRIMARY KEY,
    provider       text NOT NULL,
    state          text NOT NULL,
    nonce          text NOT NULL,
    code_verifier  text NOT NULL,
    next_path      text NOT NULL DEFAULT '',
    expires_at     timestamptz NOT NULL
);
CREATE INDEX oidc_flow_expiry ON oidc_flow (expires_at);
