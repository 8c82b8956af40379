-- Reports (issue 9): generated export files, and the daily export's once-per-local-day claim.

CREATE TABLE exports (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    location_id TEXT NOT NULL REFERENCES locations(id),
    format      TEXT NOT NULL,
    file_name   TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX exports_created ON exports(created_at);
CREATE INDEX exports_location ON exports(location_id, created_at);

-- One row per location and local calendar date: the claim that makes the daily export fire
-- exactly once per day, across restarts and replicas.
CREATE TABLE daily_export_runs (
    location_id TEXT NOT NULL REFERENCES locations(id),
    local_date  TEXT NOT NULL,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    claimed_at  INTEGER NOT NULL,
    PRIMARY KEY (location_id, local_date)
);

-- The pour-by-hour report sums `poured_l` over a location's hourly rollups: with the litres in
-- the location index the sum is read from the index alone (same prefix, so every query that
-- used the old index still can).
DROP INDEX rollups_location;
CREATE INDEX rollups_location ON rollups(location_id, bucket_ms, bucket_start, poured_l);
