SELECT seq, digest, pruned_seq, pruned_digest FROM audit_head WHERE id = 1
