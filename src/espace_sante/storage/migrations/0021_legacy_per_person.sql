-- Documents of the legacy DMP set aside are encrypted per person now (storage/legacy.py `person_space`): each
-- under the data key of a pseudo-space drawn from an HMAC of the person's INS, so that one person's documents
-- can be erased for good (`legacy forget`, and the destruction of their space) without touching anyone
-- else's. A row is found by its document's HMAC whatever its space, and the pending rows are walked across
-- all spaces. Rows set aside before this migration stay under the shared pseudo-space until a retry moves
-- them.
CREATE INDEX legacy_set_aside_unique_key ON legacy_set_aside (unique_key);
DROP INDEX legacy_set_aside_pending;
CREATE INDEX legacy_set_aside_pending ON legacy_set_aside (created_at, item_id) WHERE resolved_at IS NULL;
