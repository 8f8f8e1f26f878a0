-- Telling the holder (issue 18, "Notifications"; docs/notifications.md): a line for each event a holder (or a
-- child's representatives) is told of, written in the transaction of the event with its delivery job, so that
-- an event and its notification commit together or not at all. The line says what kind of event, who acted
-- (a professional's name from the directory, public data) and what it is about (a document's id, read under
-- the policy when shown); never anything medical, so that an e-mail built from it cannot hold any.
CREATE TABLE notification (
    space_id         uuid NOT NULL,
    notification_id  uuid NOT NULL,
    -- document | first_access | emergency | waiting | released (notifications/kinds.py)
    kind             text NOT NULL,
    -- 'holder' when the event is about something hidden from the representatives (R1111-50): they are not told.
    audience         text NOT NULL DEFAULT 'all' CHECK (audience IN ('all', 'holder')),
    actor_kind       text,
    actor_id         text,
    actor_display    text NOT NULL DEFAULT '',
    about            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- The e-mail: waiting, handed (committed just before the relay may accept it), sent, uncertain (handed,
    -- answer lost: never sent again automatically), none (nobody to write to, or she chose not to be).
    mail_state       text NOT NULL DEFAULT 'waiting'
                     CHECK (mail_state IN ('waiting', 'handed', 'sent', 'uncertain', 'none')),
    mail_attempts    integer NOT NULL DEFAULT 0,
    mail_error       text NOT NULL DEFAULT '',
    mailed_at        timestamptz,
    PRIMARY KEY (space_id, notification_id)
);
CREATE INDEX notification_recent ON notification (space_id, created_at DESC);
-- The sweep's work: the few lines whose job was lost (a killed worker, retries exhausted).
CREATE INDEX notification_waiting ON notification (created_at) WHERE mail_state IN ('waiting', 'handed');

-- Her choice, per kind, of being told by e-mail (the dashboard shows every notification whatever she chose).
-- No row: the kind's default (notifications/kinds.py: on for emergency access and a first access).
CREATE TABLE notification_choice (
    space_id    uuid NOT NULL,
    kind        text NOT NULL,
    by_email    boolean NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (space_id, kind)
);

-- The professionals (and software) that ever reached a space, so that the first access is told once: one
-- insert that finds its row already there costs the later accesses nothing more than that.
CREATE TABLE space_reader (
    space_id    uuid NOT NULL,
    actor_kind  text NOT NULL,
    actor_id    text NOT NULL,
    first_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (space_id, actor_kind, actor_id)
);
-- Those who reached a space before this table existed are not told of again as new.
INSERT INTO space_reader (space_id, actor_kind, actor_id, first_at)
SELECT space_id, actor_kind, actor_id, min(recorded_at) FROM audit_event
WHERE actor_kind IN ('practitioner', 'client') AND outcome = '0'
GROUP BY space_id, actor_kind, actor_id;

-- "New since her last visit": a session remembers when its person's previous visit began.
ALTER TABLE account ADD COLUMN visited_at timestamptz;
ALTER TABLE web_session ADD COLUMN previous_visit_at timestamptz;
