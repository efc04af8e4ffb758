-- The console's search by acting user: an index over the user reference
-- (`actor.user`, `usr1:` and 22 base64url characters) each leaf holds,
-- derived from the leaf bytes themselves, so it cannot disagree with them
-- and needs no column of its own. Plain text functions, never a JSON
-- parse: a row whose leaf is not JSON (a tampered one) indexes as NULL
-- instead of failing the write. `store::ledger::user_expr` spells the
-- same expression; the planner uses the index only for that spelling.
CREATE INDEX log_entries_user ON log_entries (
    (CASE WHEN instr(CAST(leaf AS TEXT), '"user":"usr1:') > 0
          THEN substr(CAST(leaf AS TEXT), instr(CAST(leaf AS TEXT), '"user":"usr1:') + 8, 27) END),
    idx
);
