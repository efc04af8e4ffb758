-- The subject index by entry, covering the pseudonym: `log verify` reads it
-- in (idx, pseudonym) order straight from the index, without a sort.
DROP INDEX log_subjects_idx;
CREATE INDEX log_subjects_idx ON log_subjects (idx, pseudonym);
