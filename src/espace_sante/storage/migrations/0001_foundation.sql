-- The foundation: spaces and their keys, FHIR resources with history, search index tables, machine clients.
--
-- Rule for Citus (DESIGN.md "The space is the partition"): every table of space data has a `space_id` column
-- that leads its primary key and every unique index, so the tables can be distributed by space_id.
-- Directory data (Practitioner, PractitionerRole, Organization) lives in the `dir_*` twins of the resource
-- tables: same shape, space_id always the nil UUID; they become Citus reference tables.
-- tests/storage/test_schema.py reads the live schema and enforces this.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE space (
    space_id    uuid PRIMARY KEY,
    state       text NOT NULL DEFAULT 'open',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Data keys, one (or more after rotation) per space, wrapped by the key-encryption key which is never here.
CREATE TABLE space_key (
    space_id     uuid NOT NULL,
    key_version  integer NOT NULL,
    kek_id       text NOT NULL,
    wrapped_key  bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (space_id, key_version)
);

-- The current state of each resource; the bodies are in resource_version.
CREATE TABLE resource (
    space_id       uuid NOT NULL,
    resource_type  text NOT NULL,
    resource_id    text NOT NULL,
    version_id     bigint NOT NULL,
    last_updated   timestamptz NOT NULL,
    deleted        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (space_id, resource_type, resource_id)
);
CREATE INDEX resource_type_updated ON resource (resource_type, last_updated, resource_id) WHERE NOT deleted;

-- Every version; body = nonce || AES-256-GCM(ciphertext || tag) under the space's data key, with associated
-- data binding it to (space, type, id, version, key version). NULL body marks a delete.
CREATE TABLE resource_version (
    space_id       uuid NOT NULL,
    resource_type  text NOT NULL,
    resource_id    text NOT NULL,
    version_id     bigint NOT NULL,
    last_updated   timestamptz NOT NULL,
    method         text NOT NULL CHECK (method IN ('POST', 'PUT', 'DELETE', 'PATCH')),
    key_version    integer NOT NULL,
    body           bytea,
    PRIMARY KEY (space_id, resource_type, resource_id, version_id)
);
CREATE INDEX resource_version_type_updated ON resource_version (resource_type, last_updated);
CREATE INDEX resource_version_updated ON resource_version (last_updated);

-- Search index tables: only the values search needs, for current, non-deleted versions.
CREATE TABLE sp_token (
    space_id uuid NOT NULL, resource_type text NOT NULL, resource_id text NOT NULL, param text NOT NULL,
    system text, code text NOT NULL
);
CREATE INDEX sp_token_lookup ON sp_token (resource_type, param, code, system);
CREATE INDEX sp_token_owner ON sp_token (space_id, resource_type, resource_id);

CREATE TABLE sp_string (
    space_id uuid NOT NULL, resource_type text NOT NULL, resource_id text NOT NULL, param text NOT NULL,
    normalized text COLLATE "C" NOT NULL, exact text NOT NULL
);
-- Prefix search is a range on the C-collated normalized text: (normalized >= q AND normalized < q || U+10FFFF).
CREATE INDEX sp_string_prefix ON sp_string (resource_type, param, normalized);
CREATE INDEX sp_string_trgm ON sp_string USING gin (normalized gin_trgm_ops);
CREATE INDEX sp_string_owner ON sp_string (space_id, resource_type, resource_id);

CREATE TABLE sp_date (
    space_id uuid NOT NULL, resource_type text NOT NULL, resource_id text NOT NULL, param text NOT NULL,
    low timestamptz NOT NULL, high timestamptz NOT NULL
);
CREATE INDEX sp_date_lookup ON sp_date (resource_type, param, low, high);
CREATE INDEX sp_date_owner ON sp_date (space_id, resource_type, resource_id);

CREATE TABLE sp_reference (
    space_id uuid NOT NULL, resource_type text NOT NULL, resource_id text NOT NULL, param text NOT NULL,
    target_type text NOT NULL, target_id text NOT NULL
);
CREATE INDEX sp_reference_lookup ON sp_reference (resource_type, param, target_id);
CREATE INDEX sp_reference_target ON sp_reference (space_id, target_type, target_id);
CREATE INDEX sp_reference_owner ON sp_reference (space_id, resource_type, resource_id);

CREATE TABLE sp_quantity (
    space_id uuid NOT NULL, resource_type text NOT NULL, resource_id text NOT NULL, param text NOT NULL,
    value numeric NOT NULL, system text, code text
);
CREATE INDEX sp_quantity_lookup ON sp_quantity (resource_type, param, value);
CREATE INDEX sp_quantity_owner ON sp_quantity (space_id, resource_type, resource_id);

CREATE TABLE sp_number (
    space_id uuid NOT NULL, resource_type text NOT NULL, resource_id text NOT NULL, param text NOT NULL,
    value numeric NOT NULL
);
CREATE INDEX sp_number_lookup ON sp_number (resource_type, param, value);
CREATE INDEX sp_number_owner ON sp_number (space_id, resource_type, resource_id);

-- The directory twins (reference tables under Citus).
CREATE TABLE dir_resource (LIKE resource INCLUDING ALL);
CREATE TABLE dir_resource_version (LIKE resource_version INCLUDING ALL);
CREATE TABLE dir_sp_token (LIKE sp_token INCLUDING ALL);
CREATE TABLE dir_sp_string (LIKE sp_string INCLUDING ALL);
CREATE TABLE dir_sp_date (LIKE sp_date INCLUDING ALL);
CREATE TABLE dir_sp_reference (LIKE sp_reference INCLUDING ALL);
CREATE TABLE dir_sp_quantity (LIKE sp_quantity INCLUDING ALL);
CREATE TABLE dir_sp_number (LIKE sp_number INCLUDING ALL);

-- Machine clients (OAuth 2 client credentials). Secrets and tokens are 256-bit random values, stored as
-- SHA-256 digests: a copy of the database cannot be used to authenticate.
CREATE TABLE oauth_client (
    client_id    text PRIMARY KEY,
    name         text NOT NULL,
    secret_hash  bytea NOT NULL,
    scope        text NOT NULL,
    disabled     boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE oauth_token (
    token_hash   bytea PRIMARY KEY,
    client_id    text NOT NULL REFERENCES oauth_client (client_id) ON DELETE CASCADE,
    scope        text NOT NULL,
    issued_at    timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked      boolean NOT NULL DEFAULT false
);
CREATE INDEX oauth_token_expiry ON oauth_token (expires_at);
