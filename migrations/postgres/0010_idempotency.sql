-- Idempotency-Key (IETF httpapi draft): the first answer to a write, kept
-- for a retry with the same key from the same partner. The key itself is
-- never stored, only its keyed hash; the answer's body is sealed.
CREATE TABLE idempotency_keys (
    partner     TEXT NOT NULL,
    key_ref     TEXT NOT NULL,        -- keyed hash of the caller's key
    fingerprint TEXT NOT NULL,        -- hash of method, route, path, purpose and body
    request_id  TEXT NOT NULL,        -- the request that holds the key
    created_at  BIGINT NOT NULL,      -- ms since the epoch
    expires_at  BIGINT NOT NULL,
    log_index   BIGINT,               -- set in the transaction of the request's disclosed entry
    status      INTEGER,              -- the answer, once complete
    headers     TEXT,                 -- JSON object of the replayed headers
    body        TEXT,                 -- sealed (AES-256-GCM) answer body
    PRIMARY KEY (partner, key_ref)
);
CREATE INDEX idempotency_keys_request ON idempotency_keys (request_id);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
