-- Taken first in every transaction that appends audit records: the row lock serializes
-- appends across every daemon and process sharing the database (one chain), and under READ
-- COMMITTED the row read after the wait is the head the previous append committed.
SELECT seq, digest, pruned_seq, pruned_digest FROM audit_head WHERE id = 1 FOR UPDATE
