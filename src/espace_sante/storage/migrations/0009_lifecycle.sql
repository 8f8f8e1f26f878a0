-- The lifecycle of a space (services/lifecycle.py, docs/lifecycle.md).
--
-- `space.state` (0001) now moves through: registered -> notified -> opposed | open -> active -> closed ->
-- destroyed, plus suspended. The transition table in services/lifecycle.py is the only writer; the access
-- policy reads the state among a space's facts (storage/access.py). Spaces made before this migration (demo,
-- Patients created through the API, whose default was 'open') are `active`: fully usable, as before. A
-- Patient created through the API from now on also opens an `active` space (its holder is known and no notice
-- is sent); the registry import creates `registered` spaces explicitly (registry/importer.py).
UPDATE space SET state = 'active' WHERE state = 'open';
ALTER TABLE space ALTER COLUMN state SET DEFAULT 'active';
ALTER TABLE space ADD CONSTRAINT space_state CHECK (
    state IN ('registered', 'notified', 'opposed', 'open', 'active', 'suspended', 'closed', 'destroyed')
);

-- When the space entered its current state (the suspension and archive periods count from it).
ALTER TABLE space ADD COLUMN state_at timestamptz NOT NULL DEFAULT now();
-- A notified space opens on this day unless its holder opposes (the date the notice gives).
ALTER TABLE space ADD COLUMN opens_on date;
-- A suspended space goes back to this state when the suspension is lifted.
ALTER TABLE space ADD COLUMN prior_state text;
-- Why a closed space was closed: holder, death, suspension (no objection in time), erase (destruction asked).
ALTER TABLE space ADD COLUMN closed_reason text;
-- The holder asked for destruction: the run destroys the space on or after this day.
ALTER TABLE space ADD COLUMN destroy_on date;
-- The Patient version last checked for a death date by `lifecycle run`: only Patients changed since are
-- decrypted again (the registry import writes deceasedDateTime as a new version).
ALTER TABLE space ADD COLUMN death_checked bigint NOT NULL DEFAULT 0;

-- What `lifecycle run` looks for: the few spaces in a state with a due date, never the whole table.
CREATE INDEX space_lifecycle_due ON space (state, opens_on, state_at)
    WHERE state IN ('notified', 'suspended', 'closed');
