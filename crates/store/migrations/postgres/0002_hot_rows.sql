-- devices.last_seen and telemetry.battery_pct change with every ingest batch, so an index on
-- either costs a write per batch; the queries that filter on them (silent scales, low battery at
-- a location) touch few rows and do not need one.
DROP INDEX devices_last_seen;
DROP INDEX telemetry_battery;

-- Rows updated in place by every batch keep free space in their pages, so PostgreSQL can update
-- them without touching their indexes (HOT updates). Applies to pages written from now on.
ALTER TABLE tap_state SET (fillfactor = 50);
ALTER TABLE telemetry SET (fillfactor = 50);
ALTER TABLE devices SET (fillfactor = 70);
ALTER TABLE rollups SET (fillfactor = 70);
