-- A contribution counts in the month its signal was received, unless a
-- release already published a cell of that month: then in the first month
-- no release has published, so a published cell never changes. `year` and
-- `month` stay the month received; the tables count `counted_year` and
-- `counted_month`. Rows stored before counted in the month received.
ALTER TABLE phenomenon_contributions
    ADD COLUMN counted_year BIGINT,
    ADD COLUMN counted_month BIGINT;
UPDATE phenomenon_contributions SET counted_year = year, counted_month = month;
ALTER TABLE phenomenon_contributions
    ALTER COLUMN counted_year SET NOT NULL,
    ALTER COLUMN counted_month SET NOT NULL,
    ADD CHECK (counted_month BETWEEN 1 AND 12),
    ADD CHECK (counted_year * 12 + counted_month >= year * 12 + month);
DROP INDEX phenomenon_contributions_period;
CREATE INDEX phenomenon_contributions_counted
    ON phenomenon_contributions (counted_year, counted_month);
