-- Moving a shard to another worker without stopping its writes (Citus's rebalancer, docs/scaling.md) copies it
-- and then follows its changes through logical replication, which must identify each changed row: by its
-- primary key, which the search index tables do not have (a resource has many rows per parameter, none
-- unique). REPLICA IDENTITY FULL names a row by all its columns. On a server whose `wal_level` is not
-- `logical` (plain PostgreSQL as the project runs it) this changes nothing; where it is, a deleted index row
-- logs its old values, a few dozen bytes.
ALTER TABLE sp_token REPLICA IDENTITY FULL;
ALTER TABLE sp_string REPLICA IDENTITY FULL;
ALTER TABLE sp_date REPLICA IDENTITY FULL;
ALTER TABLE sp_reference REPLICA IDENTITY FULL;
ALTER TABLE sp_quantity REPLICA IDENTITY FULL;
ALTER TABLE sp_number REPLICA IDENTITY FULL;
