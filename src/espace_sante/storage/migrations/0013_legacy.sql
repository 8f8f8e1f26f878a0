-- Documents of the legacy DMP set aside by the import (services/legacy.py, docs/legacy.md): the person is
-- unknown or opposed, the space does not take deposits (not open yet, suspended, closed), or the document was
-- refused (metadata, content). Nothing is lost: each row keeps the document and its metadata until a retry
-- deposits it, or an operator decides.
--
-- Encrypted at rest with the data key of the legacy pseudo-space (storage/legacy.LEGACY_SPACE, a `space_key`
-- row like any space's, wrapped by the KEK): `entry` (the XDS metadata, with the INS) and `content` (the
-- document). In clear only what the report needs and reveals nothing medical: the reason code, the XDS
-- attribute at fault (a name, never a value), the package's SHA-256 and the entry's path inside it.
-- `unique_key` is an HMAC of the document's uniqueId under a key derived from that data key: a re-import
-- finds its row without the uniqueId being readable here.
--
-- space_id is always the pseudo-space (tests/storage/test_schema.py: space data leads its keys with it). Once
-- the document is deposited (or found already there) the row is resolved and its encrypted columns erased.
CREATE TABLE legacy_set_aside (
    space_id      uuid NOT NULL,
    item_id       uuid NOT NULL,
    unique_key    bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    reason        text NOT NULL,
    location      text NOT NULL DEFAULT '',
    package       text NOT NULL,
    entry_path    text NOT NULL DEFAULT '',
    attempts      integer NOT NULL DEFAULT 1,
    key_version   integer NOT NULL,
    entry         bytea,
    content       bytea,
    resolved_at   timestamptz,
    outcome       text,
    PRIMARY KEY (space_id, item_id),
    CHECK (resolved_at IS NOT NULL OR entry IS NOT NULL)
);
CREATE UNIQUE INDEX legacy_set_aside_document ON legacy_set_aside (space_id, unique_key);
CREATE INDEX legacy_set_aside_pending ON legacy_set_aside (space_id, created_at, item_id)
    WHERE resolved_at IS NULL;
