SELECT name, last_tick_ms FROM schedule_ticks ORDER BY name
