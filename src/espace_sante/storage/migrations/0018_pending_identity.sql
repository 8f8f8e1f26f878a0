-- A space made from the registry gets its Patient when it opens, not at import (registry/importer.py,
-- docs/registry-format.md "Import").
--
-- Until then the person's identity as the registry gave it (the Patient body the space will have: INS, names,
-- birth date, sex, address, e-mail, death date) waits here, sealed with AES-GCM under the space's own data key
-- (version `pending_key`), bound to (space, Patient id, key version). That is all the notice period needs
-- (the notices, the birth-date check of an activation code, the death check, the coming of age), and a
-- tenth of what a FHIR Patient costs to write (its version, search rows and trace): importing a country in a
-- couple of hours depends on it. The lifecycle's `open` and `activate` steps (services/identity.py
-- `materialise`) write the Patient from it and set it to NULL: the Patient is then the one truth. A person
-- who opposes never gets a Patient at all; destroying the space destroys the key, and erasing the rows sets
-- this column to NULL. The registry's own file holds the same identity, so sealing under the space's key
-- (not a key per batch) is about uniform crypto-shredding, not secrecy from the insurer.
ALTER TABLE registry_person
    ADD COLUMN pending      bytea,
    ADD COLUMN pending_key  integer;
