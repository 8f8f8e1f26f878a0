-- Who may see what: the holder's decisions and the professionals' bases, as rows the policy reads (PRODUCT.md
-- section 4). Each table of space data leads its keys with space_id (Citus rule, see 0001).

-- Operators: insurer agents. They sign in (0004) but never read medical content.
CREATE TABLE operator (
    login       text PRIMARY KEY,
    display     text NOT NULL,
    disabled    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Legal representatives of a minor (parents, guardians), by their own INS. Their rights end at `until`, the
-- minor's 18th birthday (R1111-38).
CREATE TABLE space_representative (
    space_id            uuid NOT NULL,
    representative_ins  text NOT NULL,
    until               date NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (space_id, representative_ins)
);
CREATE INDEX space_representative_person ON space_representative (representative_ins);

-- A professional's basis on a space (L1110-4, L1111-15, L1111-17): membership of the care team treating the
-- holder, the holder's explicit consent, being the declared médecin traitant. `who` is an RPPS, or
-- `finess:<n>` for the care team of an establishment (every professional of that organisation).
-- Revoking (an objection, a withdrawn consent, a new médecin traitant) keeps the row for the record.
CREATE TABLE access_basis (
    space_id    uuid NOT NULL,
    who         text NOT NULL,
    basis       text NOT NULL CHECK (basis IN ('care_team', 'consent', 'medecin_traitant')),
    granted_by  text NOT NULL,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    PRIMARY KEY (space_id, who, basis)
);
CREATE INDEX access_basis_who ON access_basis (who) WHERE revoked_at IS NULL;

-- Professionals the holder blocked: no access on any basis, emergency included (L1111-15 al. 3).
CREATE TABLE access_block (
    space_id    uuid NOT NULL,
    rpps        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (space_id, rpps)
);
CREATE INDEX access_block_rpps ON access_block (rpps);

-- Emergency ("bris de glace") and emergency regulator (SAMU) accesses, time-limited (L1111-17 I, R1111-48).
-- The reason is a code (no free text: nothing medical in the clear).
CREATE TABLE emergency_access (
    space_id    uuid NOT NULL,
    access_id   uuid NOT NULL,
    rpps        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('emergency', 'samu')),
    reason      text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    ends_at     timestamptz NOT NULL,
    PRIMARY KEY (space_id, access_id)
);
CREATE INDEX emergency_access_rpps ON emergency_access (rpps, ends_at);

-- The holder's choices for their space. NULL shared_sections means the default sections of the matrix.
-- matrix_overrides: {"<TRE_G15 profession>": {"add": [...], "remove": [...]}} over categories and sections.
CREATE TABLE space_settings (
    space_id             uuid PRIMARY KEY,
    emergency_refused    boolean NOT NULL DEFAULT false,
    samu_refused         boolean NOT NULL DEFAULT false,
    masked_in_emergency  boolean NOT NULL DEFAULT false,
    shared_sections      text[],
    matrix_overrides     jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- Tokens now carry the person they act for: a holder through an app, a professional through their software,
-- or a development token (`espace-sante token issue`, which has no client).
ALTER TABLE oauth_token ALTER COLUMN client_id DROP NOT NULL;
ALTER TABLE oauth_token ADD COLUMN actor_kind text NOT NULL DEFAULT 'client';
ALTER TABLE oauth_token ADD COLUMN actor_id text;
ALTER TABLE oauth_token ADD COLUMN subject text NOT NULL DEFAULT '';
ALTER TABLE oauth_token ADD COLUMN acr text NOT NULL DEFAULT '';
