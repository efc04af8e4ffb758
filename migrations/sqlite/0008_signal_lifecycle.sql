-- A signal's life after intake (issue 14).
--
-- `version` counts the versions of a signal's content: every assessment or
-- correction stores the body it replaces in `signal_versions` (sealed as it
-- was, under the signal's data key, so retention's key destruction and
-- purge take every version) and the new body in `signals`.
-- `closing_reason` is set when the signal is closed (a code, never text).
ALTER TABLE signals ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE signals ADD COLUMN closing_reason TEXT;

CREATE TABLE signal_versions (
    signal_id  TEXT NOT NULL REFERENCES signals (id) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    body       BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (signal_id, version)
);

-- The status history: codes and times only. `seq` numbers a signal's
-- transitions from 1; two moves made from the same state collide on it.
CREATE TABLE signal_transitions (
    signal_id   TEXT NOT NULL REFERENCES signals (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    from_status TEXT NOT NULL,
    to_status   TEXT NOT NULL,
    reason      TEXT,
    actor       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (signal_id, seq)
);

-- A recipient's feedback on its referral: the latest status code it reported.
ALTER TABLE referrals ADD COLUMN feedback TEXT;
ALTER TABLE referrals ADD COLUMN feedback_at BIGINT;
CREATE INDEX signals_status ON signals (status, id);
