-- A per-account credential generation (docs/access-policy.md "Sign-in limits", trusted devices): it goes up
-- when the password or the TOTP secret changes and on "sign out everywhere" (every session ended). A
-- trusted-device cookie signs the generation it was given under, so those events end every trusted device.
ALTER TABLE account ADD COLUMN credential_generation bigint NOT NULL DEFAULT 0;
