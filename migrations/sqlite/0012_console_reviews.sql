-- NEN 7513 control: a privacy officer marked a control flag as reviewed.
-- The flag is computed from the log (its id names the rule and what it
-- counted); the review is written in the same transaction as its own log
-- entry (resource `control-flag:<id>`).
CREATE TABLE console_reviews (
    flag_id     TEXT NOT NULL,
    partner     TEXT NOT NULL,             -- the reviewing FG's organisation
    reviewer    TEXT NOT NULL,             -- the FG's user reference (usr1:...)
    note        TEXT NOT NULL,
    reviewed_ms BIGINT NOT NULL,
    PRIMARY KEY (flag_id, partner)
);
