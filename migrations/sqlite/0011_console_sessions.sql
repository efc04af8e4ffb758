-- The privacy officer's console: server-side sessions. The cookie holds a
-- random session id; only its SHA-256 is stored. A row is either a sign-in
-- in progress (`pending` holds the OpenID Connect state, nonce and PKCE
-- verifier, no principal yet) or a signed-in session (partner and role set).
CREATE TABLE console_sessions (
    id_hash    TEXT PRIMARY KEY,
    partner    TEXT,
    role       TEXT,
    user_ref   TEXT,
    provider   TEXT,
    csrf       TEXT NOT NULL,
    pending    TEXT,
    created_ms BIGINT NOT NULL,
    seen_ms    BIGINT NOT NULL
);
CREATE INDEX console_sessions_seen ON console_sessions (seen_ms);
