-- Notices (services/notices.py, docs/notices.md): withdrawn notices and operators' resolutions.
--
-- `withdrawn_at`: a notice that must no longer go out, because the code it carries was replaced (a minor came
-- of age: the representatives' pending notices about the child are withdrawn with their code), or because an
-- operator switched an uncertain e-mail to a letter. A withdrawn e-mail is never delivered (its text, which
-- holds the code, is erased); a withdrawn letter is never built.
-- `resolved_at`, `resolution`, `resolved_by`: what an operator decided about an uncertain e-mail after
-- checking the relay's logs (`notices resolve`: delivered, resend, letter), also traced in the space's chain.
-- `replaces`: the e-mail notice a letter stands in for (`notices resolve --letter`).
ALTER TABLE notice
    ADD COLUMN withdrawn_at timestamptz,
    ADD COLUMN resolved_at  timestamptz,
    ADD COLUMN resolution   text,
    ADD COLUMN resolved_by  text,
    ADD COLUMN replaces     uuid;
-- The operators' list: e-mails handed to the relay whose answer was not recorded, not yet resolved.
CREATE INDEX notice_uncertain ON notice (uncertain_at)
    WHERE channel = 'email' AND uncertain_at IS NOT NULL AND delivered_at IS NULL AND withdrawn_at IS NULL;
