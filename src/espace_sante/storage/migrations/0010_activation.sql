-- Activation codes (services/activation.py, docs/activation.md).
--
-- One live code per space: issuing again replaces the row (a new digest, counters cleared), which is what makes
-- the previous code stop working and what unlocks a locked code. The code itself is never stored: `digest` is
-- HMAC-SHA256 under a key derived from the pepper (outside the database) of the normalised code, so a copy of
-- the database alone cannot test a guess. `pepper_id` names the pepper that keyed it (rotation).
--
-- A redemption finds the row by digest (the person types only the code and a birth date), hence the plain
-- index on `digest`: not unique, so that the primary key stays the only unique index and it leads with
-- space_id (tests/storage/test_schema.py); two random codes of 68 bits never collide in practice, and a
-- redemption that found two rows would refuse. On Citus that lookup fans out to every shard; at national scale
-- it would move to a lookup table distributed by digest, like registry_person by NIR.
--
-- `failures` counts wrong birth dates typed with this code; at the limit `locked_at` is set and every attempt
-- is refused, the right birth date included, until an operator issues a new code. `used_at` is set once, by a
-- conditional UPDATE: two concurrent redemptions cannot both win.
CREATE TABLE activation_code (
    space_id    uuid PRIMARY KEY,
    digest      bytea NOT NULL,
    pepper_id   text NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    failures    integer NOT NULL DEFAULT 0,
    locked_at   timestamptz
);
CREATE INDEX activation_code_digest ON activation_code (digest);
