-- A contribution counts in the month its signal was received, unless a
-- release already published a cell of that month: then in the first month
-- no release has published, so a published cell never changes. `year` and
-- `month` stay the month received; the tables count `counted_year` and
-- `counted_month`. Rows stored before counted in the month received.
-- (SQLite cannot add a NOT NULL column without a default: the table is
-- rebuilt.)
CREATE TABLE phenomenon_contributions_new (
    record_key_id TEXT PRIMARY KEY REFERENCES record_keys (id),
    origin        TEXT NOT NULL CHECK (origin IN ('referral', 'demo')),
    year          BIGINT NOT NULL,
    month         BIGINT NOT NULL CHECK (month BETWEEN 1 AND 12),
    counted_year  BIGINT NOT NULL,
    counted_month BIGINT NOT NULL CHECK (counted_month BETWEEN 1 AND 12),
    forms         TEXT NOT NULL,          -- JSON array of form codes
    sector        TEXT NOT NULL,
    location_type TEXT NOT NULL,
    municipality  TEXT NOT NULL,
    victim_groups TEXT NOT NULL,          -- JSON array of victim group codes
    CHECK (counted_year * 12 + counted_month >= year * 12 + month)
);
INSERT INTO phenomenon_contributions_new (record_key_id, origin, year, month, counted_year,
    counted_month, forms, sector, location_type, municipality, victim_groups)
SELECT record_key_id, origin, year, month, year, month, forms, sector, location_type,
    municipality, victim_groups
FROM phenomenon_contributions;
DROP TABLE phenomenon_contributions;
ALTER TABLE phenomenon_contributions_new RENAME TO phenomenon_contributions;
CREATE INDEX phenomenon_contributions_counted
    ON phenomenon_contributions (counted_year, counted_month);
