-- The death check (services/lifecycle.py `_close_deceased`) looked for the spaces whose Patient changed since it
-- was last checked by joining every space with every Patient (`resource.version_id > space.death_checked`):
-- at 68 million spaces a scan of both tables per batch, every day. Now each space counts the changes of its
-- identity (`identity_version`: every Patient written, and the identity waiting in the registry, which counts
-- as one), `death_checked` holds the count last checked, and a partial index holds exactly the spaces to check.
-- A writer raises the count while holding the space row, so a check that read the older identity and marks its
-- own, smaller count leaves the space to check again (storage/lifecycle.py).
ALTER TABLE space ADD COLUMN identity_version bigint NOT NULL DEFAULT 0;

-- Before: `death_checked` was the Patient version last read (0: a waiting identity never checked). A space
-- to check gets a count one above it; a space checked, its count.
UPDATE space s SET identity_version = s.death_checked + 1
WHERE EXISTS (SELECT 1 FROM resource r WHERE r.space_id = s.space_id AND r.resource_type = 'Patient'
                AND NOT r.deleted AND r.version_id > s.death_checked)
   OR (s.death_checked = 0 AND EXISTS (SELECT 1 FROM registry_person p WHERE p.space_id = s.space_id
                                        AND p.pending IS NOT NULL));
UPDATE space SET identity_version = death_checked WHERE identity_version = 0 AND death_checked > 0;
-- A space closed on death is never reopened: nothing left to check there.
UPDATE space SET death_checked = identity_version WHERE closed_reason = 'death';

DROP INDEX space_death_unchecked;
CREATE INDEX space_death_due ON space (space_id) WHERE identity_version > death_checked;
