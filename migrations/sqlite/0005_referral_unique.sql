-- A signal is referred to a recipient for a purpose once.
CREATE UNIQUE INDEX referrals_once ON referrals (signal_id, recipient, purpose);
