-- Witnesses' cosignatures (C2SP tlog-cosignature) of the log's checkpoints:
-- one note signature line per witness and checkpoint size.
CREATE TABLE log_cosignatures (
    size       BIGINT NOT NULL,
    witness    TEXT NOT NULL,
    line       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (size, witness)
);
