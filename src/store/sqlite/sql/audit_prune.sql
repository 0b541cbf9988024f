-- Deletes the packs through record ?1 (a pack's last seq); one row per pack deleted, with
-- how many records it held.
DELETE FROM audit_packs WHERE last_seq <= ?1
RETURNING last_seq - first_seq + 1
