-- A client cancels its job: a queued or waiting one at once, a running one at its next
-- heartbeat.
-- $1 id, $2 client, $3 now. Both updates see the same snapshot, so at most one applies;
-- the last column is the state before this statement (NULL: no such job for this client).
WITH q AS (
    UPDATE jobs SET state = 'cancelled', finished_at = $3
    WHERE id = $1 AND client_id = $2 AND state IN ('queued', 'input_required')
    RETURNING 1
), r AS (
    UPDATE jobs SET cancel_requested = true
    WHERE id = $1 AND client_id = $2 AND state = 'running'
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM q), EXISTS (SELECT 1 FROM r),
       (SELECT state FROM jobs WHERE id = $1 AND client_id = $2)
