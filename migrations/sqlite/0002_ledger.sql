-- The disclosure log. Entries hold canonical leaf bytes; the other columns
-- are derived from them for searching and are checked by `log verify`.
CREATE TABLE log_head (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    size         BIGINT NOT NULL,            -- number of entries; the sequencer row
    origin       TEXT NOT NULL,              -- checkpoint origin, fixed at creation
    verifier_key TEXT NOT NULL
);

CREATE TABLE log_entries (
    idx           BIGINT PRIMARY KEY,
    leaf          BLOB NOT NULL,
    leaf_hash     BLOB NOT NULL,
    ts            BIGINT NOT NULL,           -- ms since the epoch
    action        TEXT NOT NULL,
    actor_partner TEXT NOT NULL,
    actor_role    TEXT NOT NULL,
    recipient     TEXT,
    purpose       TEXT,
    outcome       TEXT NOT NULL
);
CREATE INDEX log_entries_ts ON log_entries (ts, idx);
CREATE INDEX log_entries_actor ON log_entries (actor_partner, idx);
CREATE INDEX log_entries_recipient ON log_entries (recipient, idx);

CREATE TABLE log_subjects (
    pseudonym TEXT NOT NULL,
    idx       BIGINT NOT NULL,
    PRIMARY KEY (pseudonym, idx)
);
CREATE INDEX log_subjects_idx ON log_subjects (idx);

-- RFC 6962 subtree hashes at their tlog "stored hash index".
CREATE TABLE log_hashes (
    id   BIGINT PRIMARY KEY,
    hash BLOB NOT NULL
);

CREATE TABLE log_checkpoints (
    size       BIGINT PRIMARY KEY,
    root       BLOB NOT NULL,
    note       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
