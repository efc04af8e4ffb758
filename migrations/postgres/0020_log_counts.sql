-- The privacy officer's overview counts entries per week; at a million
-- entries reading them (and decoding each refusal for its reason) is too
-- slow for a page. These are the counts, kept at append in the entry's
-- transaction: one row per ISO week (from Monday 00:00 UTC), action,
-- acting partner, recipient, purpose, outcome and, for a refusal, its
-- first reason code; '' stands for none. Derived from the leaves like the
-- other columns: the rows add up to the log's size, and `log verify`
-- recomputes every one of them from the leaf bytes. An existing log is
-- counted when ketenpoort opens it (see `ledger::counts`), not here: a
-- v2 leaf's reasons are in its projection, which SQL does not parse.
CREATE TABLE log_counts (
    week          BIGINT NOT NULL,   -- weeks since Monday 1969-12-29
    action        TEXT NOT NULL,
    actor_partner TEXT NOT NULL,
    recipient     TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    reason        TEXT NOT NULL,
    n             BIGINT NOT NULL,
    PRIMARY KEY (week, action, actor_partner, recipient, purpose, outcome, reason)
);
