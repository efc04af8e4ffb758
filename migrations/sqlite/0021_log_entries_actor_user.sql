-- Leaf version 3 (CBOR, see ledger/compact.rs) holds the acting user's
-- reference as 16 bytes, where 0017's text expression over the leaf cannot
-- find it. The reference gets a column of its own, derived from the leaf
-- like the other columns and checked against it by `log verify`. Existing
-- rows (v1 and v2 leaves, JSON text) take it from 0017's expression; no
-- leaf is rewritten.
ALTER TABLE log_entries ADD COLUMN actor_user TEXT;
UPDATE log_entries
    SET actor_user =
    (CASE WHEN instr(CAST(leaf AS TEXT), '"user":"usr1:') > 0
          THEN substr(CAST(leaf AS TEXT), instr(CAST(leaf AS TEXT), '"user":"usr1:') + 8, 27) END);
DROP INDEX log_entries_user;
CREATE INDEX log_entries_actor_user ON log_entries (actor_user, idx);
