-- The registry import (registry/importer.py, docs/registry-format.md).
--
-- `registry_person` maps each INS the insurer's registry named to the one space made for it, with a
-- fingerprint of the row last imported: a re-import compares fingerprints and rewrites only what changed. Its
-- primary key on the INS is what makes two imports (concurrent, or one resumed after a crash) unable to make
-- two spaces for one person: the second insert of a NIR waits for the first and then finds it. It is a lookup
-- table keyed by identity, not space data; on Citus it is distributed by `nir` (or a reference table), as the
-- architecture's note on INS lookups foresaw. The INS is already in clear in the search index (sp_token).
CREATE TABLE registry_person (
    nir          text PRIMARY KEY,
    space_id     uuid NOT NULL,
    patient_id   text NOT NULL,
    fingerprint  bytea NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX registry_person_space ON registry_person (space_id);

-- One run of `registry import` over one file (identified by the SHA-256 of its bytes): the last line whose
-- batch committed and the counts so far, moved in the same transaction as the batch. A run killed midway is
-- resumed by the next run of the same file, which skips the committed lines and reports the counts of one
-- clean run. A finished run is never resumed: importing the file again compares every row anew.
CREATE TABLE registry_import (
    import_id    uuid PRIMARY KEY,
    file_sha256  bytea NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    last_line    bigint NOT NULL DEFAULT 0,
    created      bigint NOT NULL DEFAULT 0,
    updated      bigint NOT NULL DEFAULT 0,
    unchanged    bigint NOT NULL DEFAULT 0
);
CREATE INDEX registry_import_running ON registry_import (file_sha256) WHERE finished_at IS NULL;
