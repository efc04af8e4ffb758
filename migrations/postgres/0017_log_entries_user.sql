-- The console's search by acting user: an index over the user reference
-- (`actor.user`, `usr1:` and 22 base64url characters) each leaf holds,
-- derived from the leaf bytes themselves, so it cannot disagree with them
-- and needs no column of its own. Byte functions, never a JSON parse or a
-- UTF-8 conversion: a row whose leaf is not JSON (a tampered one) indexes
-- as NULL instead of failing the write. `store::ledger::user_expr` calls
-- the same function.
CREATE FUNCTION log_leaf_user(leaf BYTEA) RETURNS TEXT
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
        SELECT CASE WHEN position('"user":"usr1:'::bytea IN leaf) > 0
            THEN encode(substring(leaf FROM position('"user":"usr1:'::bytea IN leaf) + 8 FOR 27), 'escape')
        END
    $$;
CREATE INDEX log_entries_user ON log_entries (log_leaf_user(leaf), idx);
