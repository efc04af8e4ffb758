-- Projections: what the policy granted an entry (policy revision, legal
-- basis, mode, reasons and the disclosed field names; never a value),
-- stored once and named by the SHA-256 of their bytes. An entry of leaf
-- version 2 names its projection by that hash inside its leaf bytes, so
-- the Merkle tree covers the projection too; `log verify` checks every
-- row against its name. Rows are added, never changed or removed:
-- INSERT ... ON CONFLICT (hash) DO NOTHING, in the entry's transaction.
-- Entries of version 1 hold their field names inline and keep them: no
-- leaf already in the tree is rewritten (their `projection` stays NULL).
CREATE TABLE log_projections (
    hash BLOB PRIMARY KEY,           -- SHA-256 of body
    body BLOB NOT NULL               -- canonical JSON (see ledger/entry.rs)
);
-- The projection an entry names (derived from the leaf, like the other
-- columns; `log verify` checks it): lets readers join the field names in.
ALTER TABLE log_entries ADD COLUMN projection BLOB;
