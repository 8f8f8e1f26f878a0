-- Letter batches (services/notices.py build_letters, docs/notices.md "Retention"): where each `letters build`
-- run wrote its PDFs and its manifest, which carry activation codes in clear (ASVS 8.3.8). They are deleted when
-- the operator confirms their hand-over to the mailing house (`letters handed`, `handed_at`), or
-- `letter_files_days` after they were built (`notices purge` and the worker's hourly `notices.purge`);
-- `purged_at` says they are gone. A row is written in the transaction that marks the run's first letters built.
CREATE TABLE letter_batch (
    batch_id   text PRIMARY KEY,          -- the run's stamp, in its file names (lettres-<id>-001.pdf)
    out_dir    text NOT NULL,             -- the absolute folder, on the machine that built it
    built_at   timestamptz NOT NULL DEFAULT now(),
    handed_at  timestamptz,
    handed_by  text,
    purged_at  timestamptz
);
CREATE INDEX letter_batch_to_purge ON letter_batch (built_at) WHERE purged_at IS NULL;
