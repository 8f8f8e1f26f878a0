-- The trace (R1111-43): every access to a space's data, every refusal, every change of rights.
--
-- Each space's records form a hash chain: record n carries
--     hash(n) = SHA-256(hash(n-1) || int8 big-endian(n) || canonical(record n))
-- where canonical() is computed by the application (audit/record.py) and the rest here, in audit_append().
-- `audit_chain` holds the next sequence number and the current head; the row lock taken by the upsert that
-- allocates a sequence number keeps the chain linear under concurrent writers. The directory's pseudo-space
-- (nil UUID) carries what belongs to no space: refusals before a space is known, operator actions.
-- Records are append-only: UPDATE, DELETE and TRUNCATE are refused by triggers, whatever the role (short of a
-- superuser disabling triggers, which the seals and `audit verify` would reveal).

CREATE TABLE audit_chain (
    space_id    uuid PRIMARY KEY,
    seq         bigint NOT NULL,
    head        bytea NOT NULL
);

CREATE TABLE audit_event (
    space_id        uuid NOT NULL,
    seq             bigint NOT NULL,
    recorded_at     timestamptz NOT NULL,
    action          text NOT NULL,
    outcome         text NOT NULL,
    actor_kind      text NOT NULL,
    actor_id        text NOT NULL,
    actor_display   text NOT NULL DEFAULT '',
    basis           text NOT NULL DEFAULT '',
    entity_type     text,
    entity_id       text,
    entity_version  bigint,
    detail          text NOT NULL DEFAULT '',
    request_id      text NOT NULL DEFAULT '',
    prev_hash       bytea NOT NULL,
    hash            bytea NOT NULL,
    PRIMARY KEY (space_id, seq)
);
CREATE INDEX audit_event_recorded ON audit_event (space_id, recorded_at);
CREATE INDEX audit_event_actor ON audit_event (actor_kind, actor_id, recorded_at);

-- Signed chain heads: (space, seq, head) signed with a key that is not in the database.
CREATE TABLE audit_seal (
    space_id    uuid NOT NULL,
    seq         bigint NOT NULL,
    head        bytea NOT NULL,
    sealed_at   timestamptz NOT NULL DEFAULT now(),
    key_id      text NOT NULL,
    signature   bytea NOT NULL,
    PRIMARY KEY (space_id, seq)
);

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the trace is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_seal_append_only BEFORE UPDATE OR DELETE ON audit_seal
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_seal_no_truncate BEFORE TRUNCATE ON audit_seal
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

-- Append one record in one statement: allocate the next sequence number (the upsert locks the space's chain
-- row until the calling transaction ends, so concurrent writers are serialised and the chain stays linear),
-- link it to the head, insert it, move the head. One round trip per traced access.
CREATE FUNCTION audit_append(
    p_space uuid, p_recorded timestamptz, p_action text, p_outcome text, p_actor_kind text, p_actor_id text,
    p_actor_display text, p_basis text, p_entity_type text, p_entity_id text, p_entity_version bigint,
    p_detail text, p_request_id text, p_canonical bytea
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
    v_prev bytea;
    v_hash bytea;
BEGIN
    INSERT INTO audit_chain AS c (space_id, seq, head) VALUES (p_space, 1, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
        ON CONFLICT (space_id) DO UPDATE SET seq = c.seq + 1
        RETURNING c.seq, c.head INTO v_seq, v_prev;
    v_hash := sha256(v_prev || int8send(v_seq) || p_canonical);
    INSERT INTO audit_event (space_id, seq, recorded_at, action, outcome, actor_kind, actor_id, actor_display,
                             basis, entity_type, entity_id, entity_version, detail, request_id, prev_hash, hash)
        VALUES (p_space, v_seq, p_recorded, p_action, p_outcome, p_actor_kind, p_actor_id, p_actor_display,
                p_basis, p_entity_type, p_entity_id, p_entity_version, p_detail, p_request_id, v_prev, v_hash);
    UPDATE audit_chain SET head = v_hash WHERE space_id = p_space;
    RETURN v_seq;
END;
$$;
