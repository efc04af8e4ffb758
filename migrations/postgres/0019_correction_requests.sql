-- A reporter's request to correct its signal after `nieuw` (issue 14): a
-- logged message to the ZVHD, not a change. `body` holds the proposed
-- JSON Merge Patch and the reporter's note, sealed under the signal's data
-- key (associated data `<signal id>/correction/<id>`), so retention's key
-- destruction and purge take it with the signal. `against_version` is the
-- version the reporter saw; the ZVHD applies a request, if at all, with an
-- assessment (a new version).
CREATE TABLE signal_correction_requests (
    id              TEXT PRIMARY KEY,
    signal_id       TEXT NOT NULL REFERENCES signals (id) ON DELETE CASCADE,
    against_version BIGINT NOT NULL,
    partner         TEXT NOT NULL,
    body            BYTEA NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX signal_correction_requests_signal ON signal_correction_requests (signal_id, created_at, id);
