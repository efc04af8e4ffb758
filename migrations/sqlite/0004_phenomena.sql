-- The RIEC boundary (invariant 1): phenomenon tables under disclosure
-- control, and the egress guard's fingerprints. No column here holds a
-- personal value.

-- A secret, permanent random key per signal (the cell key method). Made in
-- the submit transaction; never exported, never in a response or a log.
-- Retention unlinks it from its signal (signal_id NULL) while it still
-- counts in the tables, so published cells stay stable.
CREATE TABLE record_keys (
    id         TEXT PRIMARY KEY,
    signal_id  TEXT UNIQUE,
    record_key BIGINT NOT NULL
);

-- What a signal referred to a non-member contributes to the phenomenon
-- tables: category codes and the month received (used only to cut a release
-- off; the finest published period is a quarter). One row per signal.
CREATE TABLE phenomenon_contributions (
    record_key_id TEXT PRIMARY KEY REFERENCES record_keys (id),
    origin        TEXT NOT NULL CHECK (origin IN ('referral', 'demo')),
    year          BIGINT NOT NULL,
    month         BIGINT NOT NULL CHECK (month BETWEEN 1 AND 12),
    forms         TEXT NOT NULL,          -- JSON array of form codes
    sector        TEXT NOT NULL,
    location_type TEXT NOT NULL,
    municipality  TEXT NOT NULL,
    victim_groups TEXT NOT NULL           -- JSON array of victim group codes
);
CREATE INDEX phenomenon_contributions_period ON phenomenon_contributions (year, month);

-- Published releases, stored once and served as stored; never recomputed.
CREATE TABLE phenomenon_releases (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,  -- feed order and cursor
    id         TEXT NOT NULL UNIQUE,               -- the period, e.g. 2026-Q3
    created_at BIGINT NOT NULL,
    body       TEXT NOT NULL                       -- the release (JSON)
);

-- Keyed hashes (HMAC, keys/egress.key) of the normalised names, BSNs,
-- e-mail addresses, phone numbers, ids and pseudonyms stored with a signal:
-- the egress guard blocks any response to a non-member that contains one.
-- Purged with the signal.
CREATE TABLE egress_fingerprints (
    fingerprint BLOB NOT NULL,
    signal_id   TEXT NOT NULL,
    PRIMARY KEY (fingerprint, signal_id)
);
CREATE INDEX egress_fingerprints_signal ON egress_fingerprints (signal_id);
