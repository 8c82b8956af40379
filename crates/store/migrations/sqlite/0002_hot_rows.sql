-- devices.last_seen and telemetry.battery_pct change with every ingest batch, so an index on
-- either costs a write per batch; the queries that filter on them (silent scales, low battery at
-- a location) touch few rows and do not need one.
DROP INDEX devices_last_seen;
DROP INDEX telemetry_battery;
