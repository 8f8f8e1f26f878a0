-- Which space holds a Patient with this identifier (an INS, a hospital's IPP): the question every ITI-65
-- deposit (`Patient?identifier=…`), ITI-67 search (`patient.identifier=…`) and professional's search by INS
-- asks first. The search index answers it on one server (sp_token_lookup), but on Citus sp_token is spread by
-- space, so the question would go to every shard. This table holds the same rows keyed by the identifier's
-- value: on Citus it is distributed on `value` (colocated with the registry's links, distributed on the INS),
-- and the lookup runs on one shard (docs/architecture.md "On Citus"). It is written with the Patient's search
-- rows (storage/resources.py, storage/provision.py) and holds nothing the search index does not.
CREATE TABLE patient_identifier (
    value        text NOT NULL,
    system       text,
    space_id     uuid NOT NULL,
    resource_id  text NOT NULL
);
CREATE INDEX patient_identifier_value ON patient_identifier (value, system);
CREATE INDEX patient_identifier_owner ON patient_identifier (space_id, resource_id);

INSERT INTO patient_identifier (value, system, space_id, resource_id)
SELECT code, system, space_id, resource_id FROM sp_token WHERE resource_type = 'Patient' AND param = 'identifier';
ALTER TABLE patient_identifier REPLICA IDENTITY FULL;  -- no primary key: shard moves name rows by all columns (0028)
