-- The death check (services/lifecycle.py `_close_deceased`, run first by `notices send`, by the last step of
-- `registry import --notify` and by `lifecycle run`) looks for the spaces whose identity waits in the registry
-- and was never checked (`death_checked = 0`). Without an index that was a scan of every space per batch of
-- 1,000 found: at 68 million spaces, minutes per batch. The registry import writes 1 there for a living
-- person, so the index holds only the spaces still to check: the registry's deceased, a few others.
CREATE INDEX space_death_unchecked ON space (space_id) WHERE death_checked = 0;
