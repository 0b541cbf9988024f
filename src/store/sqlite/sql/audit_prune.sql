-- Deletes records through ?1 and moves the checkpoint to (?1, ?2).
DELETE FROM audit WHERE seq <= ?1
