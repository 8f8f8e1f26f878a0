-- An e-mail notice waiting for delivery no longer keeps its text (which holds the activation code) in clear:
-- what it says (the addressee's name, the child's, the dates and the code) is sealed with AES-GCM under the
-- space's data key, as a letter's data already was (migration 0012), and the text is rendered at delivery
-- (services/notices.py). A copy of the database then shows no live code, and writing 200 bytes instead of
-- 1.2 KB of text per person is a fifth of what the registry import's notice rows cost (docs/notices.md).
-- The column that held the sealed letters holds both now. E-mails recorded before this migration keep their
-- text in `body` and are delivered from it.
ALTER TABLE notice RENAME COLUMN letter_sealed TO sealed;
