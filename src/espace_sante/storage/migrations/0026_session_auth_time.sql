-- When the person last proved who they are in this session (SECURITY V3 3.7.1, docs/access-policy.md
-- "Actions that cannot be undone"): the sign-in (a federated sign-in: the identity provider's `auth_time`), then
-- each confirmation of identity on the step-up page. Closing or destroying a space and an emergency access need
-- a proof of the last five minutes. Sessions open before this migration count from their start.
ALTER TABLE web_session ADD COLUMN auth_time timestamptz;
UPDATE web_session SET auth_time = created_at;
ALTER TABLE web_session ALTER COLUMN auth_time SET DEFAULT now(), ALTER COLUMN auth_time SET NOT NULL;

-- The same proof carried to a SMART token: the code remembers the approving session's `auth_time`, the access
-- token issued for it too; a refreshed token has none (NULL: no proof). A development token counts from its issue.
ALTER TABLE oauth_code ADD COLUMN auth_time timestamptz;
ALTER TABLE oauth_token ADD COLUMN auth_time timestamptz;
