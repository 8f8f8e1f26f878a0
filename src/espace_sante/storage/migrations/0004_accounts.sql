-- People who sign in: accounts, their credentials and sessions (issue 4, "Actors and sign-in"; SECURITY V2,
-- V3). Outside FHIR and outside spaces: an account links to the identity the access policy knows, by kind and
-- national identifier (INS, RPPS, operator login). No secret is stored in clear: passwords are argon2id hashes
-- of an HMAC keyed by the pepper (never in the database), TOTP secrets are encrypted under a key derived from
-- it, recovery codes and session secrets are keyed digests or SHA-256 digests.

CREATE TABLE account (
    account_id  uuid PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('holder', 'practitioner', 'operator')),
    actor_id    text NOT NULL,
    -- As entered, for display; `login_key` is its case-folded NFKC form, unique.
    login       text NOT NULL,
    login_key   text NOT NULL UNIQUE,
    email       text,
    disabled    boolean NOT NULL DEFAULT false,
    -- The WebAuthn user handle: random, never the INS or the login (WebAuthn section 14.6.1).
    webauthn_user bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, actor_id)
);

CREATE TABLE account_password (
    account_id  uuid PRIMARY KEY REFERENCES account ON DELETE CASCADE,
    hash        text NOT NULL,          -- argon2id encoded hash (own salt and parameters)
    pepper_id   text NOT NULL,          -- which pepper keyed the HMAC (rotation)
    changed_at  timestamptz NOT NULL DEFAULT now()
);

-- TOTP (RFC 6238). `last_step` is the last time step accepted: a code works once (SECURITY V2 2.8.4).
CREATE TABLE account_totp (
    account_id    uuid PRIMARY KEY REFERENCES account ON DELETE CASCADE,
    secret_enc    bytea NOT NULL,
    key_id        text NOT NULL,
    last_step     bigint NOT NULL DEFAULT 0,
    confirmed_at  timestamptz NOT NULL DEFAULT now()
);

-- A TOTP secret shown to the user and waiting for a first code before it replaces the active one.
CREATE TABLE account_totp_pending (
    account_id  uuid PRIMARY KEY REFERENCES account ON DELETE CASCADE,
    secret_enc  bytea NOT NULL,
    key_id      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Single-use recovery codes, as keyed digests (HMAC-SHA256 under a pepper-derived key, salted by account).
CREATE TABLE account_recovery_code (
    account_id  uuid NOT NULL REFERENCES account ON DELETE CASCADE,
    code_hash   bytea NOT NULL,
    key_id      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    used_at     timestamptz,
    PRIMARY KEY (account_id, code_hash)
);

-- WebAuthn credentials (passkeys).
CREATE TABLE account_passkey (
    credential_id  bytea PRIMARY KEY,
    account_id     uuid NOT NULL REFERENCES account ON DELETE CASCADE,
    public_key     bytea NOT NULL,
    sign_count     bigint NOT NULL DEFAULT 0,
    name           text NOT NULL DEFAULT '',
    aaguid         text NOT NULL DEFAULT '',
    backed_up      boolean NOT NULL DEFAULT false,
    transports     text[] NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_used_at   timestamptz
);
CREATE INDEX account_passkey_account ON account_passkey (account_id);

-- WebAuthn challenges, kept server-side: single use (deleted when used), short expiry. `binding` is the
-- SHA-256 of the browser's pre-session cookie (sign-in) or the session id (registration).
CREATE TABLE webauthn_challenge (
    challenge   bytea PRIMARY KEY,
    purpose     text NOT NULL CHECK (purpose IN ('register', 'authenticate')),
    binding     bytea NOT NULL,
    account_id  uuid REFERENCES account ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX webauthn_challenge_expiry ON webauthn_challenge (expires_at);

-- The step between a right password and the second factor: the browser holds the secret, we its digest.
CREATE TABLE signin_flow (
    flow_hash   bytea PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES account ON DELETE CASCADE,
    next_path   text NOT NULL DEFAULT '',
    expires_at  timestamptz NOT NULL
);

-- Server-side sessions (SECURITY V3): the cookie holds a 256-bit secret, the row its SHA-256 digest.
CREATE TABLE web_session (
    session_id    uuid PRIMARY KEY,
    secret_hash   bytea NOT NULL UNIQUE,
    account_id    uuid NOT NULL REFERENCES account ON DELETE CASCADE,
    acr           text NOT NULL,
    method        text NOT NULL,
    csrf_token    text NOT NULL,
    user_agent    text NOT NULL DEFAULT '',
    ip            text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX web_session_account ON web_session (account_id);
CREATE INDEX web_session_expiry ON web_session (expires_at);

-- Failure counters for every guessable secret, shared by every app process (SECURITY V2 2.2.1).
-- `key` names what is counted: `pw:<login digest>`, `2fa:<account>`, `pk:<account>`, `ip:<address>`.
CREATE TABLE signin_throttle (
    key           text PRIMARY KEY,
    failures      integer NOT NULL DEFAULT 0,
    window_start  timestamptz NOT NULL DEFAULT now(),
    locked_until  timestamptz
);

-- Mail waiting to be sent, or kept when no SMTP server is configured (the embedded default). Security notices
-- only: never medical content.
CREATE TABLE outbox (
    message_id  uuid PRIMARY KEY,
    recipient   text NOT NULL,
    subject     text NOT NULL,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    error       text NOT NULL DEFAULT ''
);
CREATE INDEX outbox_unsent ON outbox (created_at) WHERE sent_at IS NULL;
