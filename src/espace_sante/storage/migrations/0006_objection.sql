-- The holder's objection to a professional's basis (a care-team member, a consent recorded in consultation)
-- holds until the holder lifts it: the professional cannot declare themselves again (review of 2026-11-24).
ALTER TABLE access_basis ADD COLUMN objected_at timestamptz;
