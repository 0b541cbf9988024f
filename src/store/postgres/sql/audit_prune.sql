DELETE FROM audit WHERE seq <= $1
