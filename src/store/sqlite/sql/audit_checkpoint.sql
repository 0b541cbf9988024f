UPDATE audit_head SET pruned_seq = ?1, pruned_digest = ?2 WHERE id = 1
