-- A schedule enqueued its ticks up to $2 (ms): the row only moves forward, so a daemon
-- that read an older tick cannot move it back.
INSERT INTO schedule_ticks (name, last_tick_ms) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET last_tick_ms = excluded.last_tick_ms
WHERE excluded.last_tick_ms > schedule_ticks.last_tick_ms
