-- Leaf version 3 (CBOR, see ledger/compact.rs) holds the acting user's
-- reference as 16 bytes, where 0017's byte expression over the leaf cannot
-- find it. The reference gets a column of its own, derived from the leaf
-- like the other columns and checked against it by `log verify`. Existing
-- rows (v1 and v2 leaves, JSON text) take it by 0017's expression, spelled
-- out here (its function is dropped with its index); no leaf is rewritten.
ALTER TABLE log_entries ADD COLUMN actor_user TEXT;
UPDATE log_entries
    SET actor_user = encode(substring(leaf FROM position('"user":"usr1:'::bytea IN leaf) + 8 FOR 27), 'escape')
    WHERE position('"user":"usr1:'::bytea IN leaf) > 0;
DROP INDEX log_entries_user;
DROP FUNCTION log_leaf_user(BYTEA);
CREATE INDEX log_entries_actor_user ON log_entries (actor_user, idx);
