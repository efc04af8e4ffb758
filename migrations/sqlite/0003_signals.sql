-- Signals: the personal data is in `body`, AES-256-GCM under the signal's
-- own data key. The other columns hold codes and dates for filtering and for
-- the policy; never names, numbers or free text.
CREATE TABLE signals (
    id               TEXT PRIMARY KEY,
    reporter         TEXT NOT NULL,
    municipality     TEXT NOT NULL,
    forms            TEXT NOT NULL,        -- JSON array of form codes
    date_received    TEXT NOT NULL,        -- YYYY-MM-DD
    victim_minor     INTEGER NOT NULL,
    domestic_setting INTEGER NOT NULL,
    status           TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    body             BLOB NOT NULL
);
CREATE INDEX signals_reporter ON signals (reporter, id);
CREATE INDEX signals_created ON signals (created_at);

-- Wrapped data keys, apart from the records: without a row here, a record
-- (or any copy of it) cannot be decrypted. Retention deletes the row.
CREATE TABLE signal_keys (
    signal_id TEXT PRIMARY KEY,
    kek_id    TEXT NOT NULL,
    wrapped   BLOB NOT NULL
);

CREATE TABLE referrals (
    id          TEXT PRIMARY KEY,
    signal_id   TEXT NOT NULL REFERENCES signals (id) ON DELETE CASCADE,
    recipient   TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    referred_by TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX referrals_signal ON referrals (signal_id);

-- A recipient's copy: the projection made for it at referral time,
-- encrypted under the signal's data key (so retention destroys it too).
CREATE TABLE inbox (
    id          TEXT PRIMARY KEY,
    signal_id   TEXT NOT NULL REFERENCES signals (id) ON DELETE CASCADE,
    referral_id TEXT NOT NULL REFERENCES referrals (id) ON DELETE CASCADE,
    recipient   TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    body        BLOB NOT NULL,
    created_at  BIGINT NOT NULL,
    acked_at    BIGINT
);
CREATE INDEX inbox_recipient ON inbox (recipient, id);
