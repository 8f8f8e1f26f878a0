-- A minor comes of age (services/majority.py, docs/lifecycle.md). The representatives' rights already end on
-- their `until` date (the child's 18th birthday: the policy compares it with the day of each request); what
-- `lifecycle run` does once per space is tell the young adult, with their own notice and activation code, and
-- trace it. `of_age_done` marks the representative rows it has handled, so that the daily run reads only the
-- few rows that came due (partial index), never the whole table.
ALTER TABLE space_representative ADD COLUMN of_age_done boolean NOT NULL DEFAULT false;
CREATE INDEX space_representative_of_age ON space_representative (until) WHERE NOT of_age_done;
