-- Notices of a new space (services/notices.py, docs/notices.md).
--
-- One row per notice to deliver: written in the SAME transaction as the activation code and the move of the
-- space to `notified`, so that a crash leaves either all three or none (never a notified space without a
-- notice, never a notice for a space still registered). Delivery happens after commit, from this table:
-- an e-mail is marked `delivered_at` (and its text, which holds the code, erased); a letter is marked
-- `built_at` with its file and page by `letters build` (and its code erased from `letter`).
--
-- The row belongs to the space the notice is about (a child's notice to a representative is the child's), so
-- its key leads with space_id (Citus: co-located with the space).
CREATE TABLE notice (
    space_id      uuid NOT NULL,
    notice_id     uuid NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    channel       text NOT NULL CHECK (channel IN ('email', 'letter')),
    -- e-mail: the address, subject and text (with the code; erased once delivered)
    recipient     text NOT NULL DEFAULT '',
    subject       text NOT NULL DEFAULT '',
    body          text NOT NULL DEFAULT '',
    delivered_at  timestamptz,
    error         text NOT NULL DEFAULT '',
    -- letter: name, address, dates and the code (the code key is removed once the letter is built)
    letter        jsonb,
    built_at      timestamptz,
    batch_file    text,
    page          integer,
    PRIMARY KEY (space_id, notice_id)
);
CREATE INDEX notice_email_due ON notice (created_at) WHERE channel = 'email' AND delivered_at IS NULL;
CREATE INDEX notice_letter_due ON notice (created_at) WHERE channel = 'letter' AND built_at IS NULL;
