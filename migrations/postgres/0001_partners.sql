-- The partner registry: who may connect, in which kind and roles.
CREATE TABLE partners (
    id                TEXT PRIMARY KEY,
    display_name      TEXT NOT NULL,
    kind              TEXT NOT NULL,
    member            BIGINT NOT NULL CHECK (member IN (0, 1)),
    oin               TEXT,
    roles             TEXT NOT NULL,          -- JSON array of role ids
    cert_fingerprints TEXT NOT NULL,          -- JSON array of lowercase hex SHA-256
    status            TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    created_at        BIGINT NOT NULL         -- ms since the epoch
);
