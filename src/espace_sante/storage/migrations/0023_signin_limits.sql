-- Sign-in limits that a stranger cannot turn into a lockout (docs/access-policy.md, "Sign-in limits").
--
-- Once a login has had more failures than its hourly ceiling, a password typed from a browser that is not one
-- of the account's trusted devices is no longer answered right or wrong: every such attempt goes on to the code
-- step (a "blind" step), and only the right password with the right code opens a session. A blind step whose
-- password was wrong, or whose login is unknown, has no account; it shows the login typed.
ALTER TABLE signin_flow ALTER COLUMN account_id DROP NOT NULL;
ALTER TABLE signin_flow ADD COLUMN blind boolean NOT NULL DEFAULT false;
ALTER TABLE signin_flow ADD COLUMN login text NOT NULL DEFAULT '';

-- `signin_throttle.locked_until` is now the end of the current wait (progressive back-off), and the keys are
-- `pw:<login digest>|ip:<address>` or `|dev:<trusted device>` (per login and source), `pw:<login digest>`
-- (the login's ceiling, all sources together), likewise `2fa:` and `pk:` by account, and `ip:<address>`.
COMMENT ON COLUMN signin_throttle.locked_until IS 'end of the current wait (back-off); NULL: no wait';
-- A ceiling never makes anyone wait: the locks of the former per-login and per-account counters are lifted.
UPDATE signin_throttle SET locked_until = NULL WHERE key ~ '^(pw|2fa|pk):[^|]*$';
