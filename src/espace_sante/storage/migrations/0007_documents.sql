-- Document content lives in the blob store (storage/blobs.py), encrypted with the space's data key; these rows
-- say where each Binary's content is and what it is. A Binary resource keeps its metadata (contentType,
-- securityContext) in the resource tables, never its bytes.

-- One stored object per distinct content in a space: identical uploads are stored once (`mac` is an HMAC of
-- the plaintext under a key derived from the space's data key, so equal files in two spaces, or a guessed file,
-- cannot be recognised from the database).
CREATE TABLE blob (
    space_id     uuid        NOT NULL,
    blob_id      uuid        NOT NULL,
    mac          bytea       NOT NULL,
    key_version  integer     NOT NULL,
    size         bigint      NOT NULL,  -- plaintext bytes
    stored_size  bigint      NOT NULL,  -- bytes in the store (segmented AES-GCM)
    kind         text        NOT NULL,  -- pdf | cda | jpeg | png | text (content/checks.py)
    media_type   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (space_id, blob_id)
);
CREATE UNIQUE INDEX blob_mac ON blob (space_id, mac, key_version);

-- The content of each version of a Binary (a PUT of new content makes a new version; old ones stay readable
-- through history).
CREATE TABLE binary_content (
    space_id    uuid    NOT NULL,
    binary_id   text    NOT NULL,
    version_id  integer NOT NULL,
    blob_id     uuid    NOT NULL,
    PRIMARY KEY (space_id, binary_id, version_id),
    FOREIGN KEY (space_id, blob_id) REFERENCES blob (space_id, blob_id)
);
CREATE INDEX binary_content_blob ON binary_content (space_id, blob_id);

-- Written and committed before an object is put in the store, deleted in the transaction that records the
-- blob: an intent that outlives its grace period belongs to a submission that never committed (crash,
-- rollback, retry), and the collector deletes its object (no orphan blobs, docs/documents.md).
CREATE TABLE blob_upload (
    space_id    uuid        NOT NULL,
    blob_id     uuid        NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (space_id, blob_id)
);
CREATE INDEX blob_upload_started ON blob_upload (started_at);

-- Hidden-from-the-holder documents (INVISIBLE_PATIENT) waiting for their announcement consultation: the holder
-- is told after `hidden_notice_days`, the flag is lifted after `hidden_release_days` (R1111-53) unless the
-- author or the médecin traitant released the document first. One row per document while it is hidden.
CREATE TABLE hidden_document (
    space_id     uuid        NOT NULL,
    document_id  text        NOT NULL,
    deposited_at timestamptz NOT NULL,
    notice_at    timestamptz NOT NULL,
    release_at   timestamptz NOT NULL,
    noticed_at   timestamptz,
    PRIMARY KEY (space_id, document_id)
);
CREATE INDEX hidden_document_notice ON hidden_document (notice_at) WHERE noticed_at IS NULL;
CREATE INDEX hidden_document_release ON hidden_document (release_at);
