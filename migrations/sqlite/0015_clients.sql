-- Partner systems that obtain their own short-lived tokens at the token
-- endpoint (OAuth 2.0 client credentials): one row per client of a partner.
CREATE TABLE clients (
    id               TEXT PRIMARY KEY,       -- the OAuth client_id
    partner          TEXT NOT NULL REFERENCES partners (id),
    roles            TEXT NOT NULL,          -- JSON array: the roles it may ask for
    method           TEXT NOT NULL CHECK (method IN ('self_signed_tls_client_auth', 'tls_client_auth', 'private_key_jwt')),
    cert_fingerprint TEXT,                   -- self_signed_tls_client_auth: lowercase hex SHA-256 of the DER certificate
    oin              TEXT,                   -- tls_client_auth: the certificate subject's serialNumber (OIN)
    jwks             TEXT,                   -- private_key_jwt: the client's public keys (a JWKS)
    status           TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    created_at       BIGINT NOT NULL
);
CREATE INDEX clients_partner ON clients (partner);

-- The jti of every private_key_jwt assertion until it expires: a replayed
-- assertion is refused.
CREATE TABLE client_assertions (
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
