-- Scale Sense schema, PostgreSQL rendering. Keep in step with migrations/sqlite/0001_init.sql:
-- same tables, columns, keys and indexes; only types and identity columns differ.
-- Times are epoch milliseconds (BIGINT), quantities SI (DOUBLE PRECISION), JSON documents TEXT.

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE locations (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    name        TEXT NOT NULL,
    address     TEXT NOT NULL,
    time_zone   TEXT NOT NULL,
    units       TEXT NOT NULL CHECK (units IN ('metric', 'imperial')),
    settings    TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX locations_account ON locations(account_id);

CREATE TABLE beers (
    id                TEXT PRIMARY KEY,
    location_id       TEXT REFERENCES locations(id),
    name              TEXT NOT NULL,
    brewery           TEXT NOT NULL,
    style             TEXT NOT NULL,
    abv               DOUBLE PRECISION NOT NULL,
    specific_gravity  DOUBLE PRECISION NOT NULL CHECK (specific_gravity > 0),
    search_text       TEXT NOT NULL
);
CREATE INDEX beers_location ON beers(location_id);

-- Per keg type weights. scope = '' is the library default seen by every account; an account's
-- own measurements live under scope = account id and shadow the default for that account only.
CREATE TABLE beer_keg_weights (
    scope           TEXT NOT NULL,
    beer_id         TEXT NOT NULL REFERENCES beers(id),
    keg_type        TEXT NOT NULL,
    full_kg         DOUBLE PRECISION NOT NULL,
    empty_kg        DOUBLE PRECISION NOT NULL,
    measured_at     BIGINT,
    measured_count  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (beer_id, keg_type, scope)
);

CREATE TABLE taps (
    id           TEXT PRIMARY KEY,
    location_id  TEXT NOT NULL REFERENCES locations(id),
    number       BIGINT NOT NULL,
    name         TEXT NOT NULL,
    beer_id      TEXT REFERENCES beers(id),
    UNIQUE (location_id, number)
);

CREATE TABLE tap_state (
    tap_id         TEXT PRIMARY KEY REFERENCES taps(id),
    series         TEXT,
    level_pct      DOUBLE PRECISION,
    volume_l       DOUBLE PRECISION,
    weight_kg      DOUBLE PRECISION,
    -- Reference volume for pour counting: see ingest.rs.
    ref_volume_l   DOUBLE PRECISION,
    updated_at     BIGINT,
    tare_status    TEXT,
    maintenance    BOOLEAN NOT NULL DEFAULT FALSE,
    last_boot      BIGINT,
    last_seq       BIGINT
);

CREATE TABLE devices (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts(id),
    location_id  TEXT REFERENCES locations(id),
    tap_id       TEXT REFERENCES taps(id),
    fw_version   TEXT,
    status       TEXT NOT NULL CHECK (status IN ('online', 'offline')),
    last_seen    BIGINT,
    maintenance  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   BIGINT NOT NULL
);
CREATE INDEX devices_account_location ON devices(account_id, location_id);
CREATE UNIQUE INDEX devices_one_per_tap ON devices(tap_id) WHERE tap_id IS NOT NULL;
CREATE INDEX devices_last_seen ON devices(last_seen);

CREATE TABLE telemetry (
    device_id       TEXT PRIMARY KEY REFERENCES devices(id),
    battery_v       DOUBLE PRECISION,
    battery_pct     DOUBLE PRECISION,
    rssi            BIGINT,
    updated_at      BIGINT,
    tare_empty_raw  BIGINT,
    tare_full_kg    DOUBLE PRECISION,
    tare_at         BIGINT
);
CREATE INDEX telemetry_battery ON telemetry(battery_pct);

CREATE TABLE calibrations (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id        TEXT NOT NULL REFERENCES devices(id),
    scale_factor     DOUBLE PRECISION NOT NULL,
    zero_offset      BIGINT NOT NULL,
    method           TEXT NOT NULL,
    known_weight_kg  DOUBLE PRECISION,
    drift_pct        DOUBLE PRECISION,
    by_whom          TEXT NOT NULL,
    at               BIGINT NOT NULL
);
CREATE INDEX calibrations_device_at ON calibrations(device_id, at, id);

CREATE TABLE kegs (
    id                TEXT PRIMARY KEY,
    location_id       TEXT NOT NULL REFERENCES locations(id),
    beer_id           TEXT NOT NULL REFERENCES beers(id),
    keg_type          TEXT NOT NULL,
    full_kg           DOUBLE PRECISION NOT NULL,
    empty_kg          DOUBLE PRECISION NOT NULL,
    specific_gravity  DOUBLE PRECISION NOT NULL CHECK (specific_gravity > 0),
    tap_id            TEXT REFERENCES taps(id),
    state             TEXT NOT NULL CHECK (state IN ('created', 'tapped', 'kicked', 'removed')),
    created_at        BIGINT NOT NULL,
    tapped_at         BIGINT,
    kicked_at         BIGINT,
    removed_at        BIGINT
);
CREATE INDEX kegs_location_state ON kegs(location_id, state);
-- One keg per tap at a time.
CREATE UNIQUE INDEX kegs_one_tapped_per_tap ON kegs(tap_id) WHERE state = 'tapped';

CREATE TABLE tare_records (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    keg_id      TEXT NOT NULL REFERENCES kegs(id),
    device_id   TEXT NOT NULL REFERENCES devices(id),
    kind        TEXT NOT NULL CHECK (kind IN ('empty', 'full')),
    raw         BIGINT NOT NULL,
    weight_kg   DOUBLE PRECISION NOT NULL,
    by_whom     TEXT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX tare_records_keg ON tare_records(keg_id, at);

-- Raw readings, keyed for idempotency by (device, boot, seq) and read by series (the keg, or
-- the tap when no keg was tapped) and time.
CREATE TABLE readings (
    device_id    TEXT NOT NULL,
    boot         BIGINT NOT NULL,
    seq          BIGINT NOT NULL,
    series       TEXT NOT NULL,
    location_id  TEXT NOT NULL,
    tap_id       TEXT NOT NULL,
    keg_id       TEXT,
    ts           BIGINT NOT NULL,
    weight_kg    DOUBLE PRECISION NOT NULL,
    level_pct    DOUBLE PRECISION NOT NULL,
    volume_l     DOUBLE PRECISION,
    battery_v    DOUBLE PRECISION,
    battery_pct  DOUBLE PRECISION,
    rssi         BIGINT,
    stable       BOOLEAN NOT NULL,
    PRIMARY KEY (device_id, boot, seq)
);
CREATE INDEX readings_series_ts ON readings(series, ts);
CREATE INDEX readings_location_ts ON readings(location_id, ts);

CREATE TABLE rollups (
    series         TEXT NOT NULL,
    bucket_ms      BIGINT NOT NULL,
    bucket_start   BIGINT NOT NULL,
    location_id    TEXT NOT NULL,
    tap_id         TEXT NOT NULL,
    n              BIGINT NOT NULL,
    level_sum      DOUBLE PRECISION NOT NULL,
    level_min      DOUBLE PRECISION NOT NULL,
    level_max      DOUBLE PRECISION NOT NULL,
    battery_sum    DOUBLE PRECISION NOT NULL,
    battery_n      BIGINT NOT NULL,
    first_ts       BIGINT NOT NULL,
    first_volume   DOUBLE PRECISION,
    last_ts        BIGINT NOT NULL,
    last_volume    DOUBLE PRECISION,
    poured_l       DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (series, bucket_ms, bucket_start)
);
CREATE INDEX rollups_location ON rollups(location_id, bucket_ms, bucket_start);

CREATE TABLE alerts_active (
    location_id      TEXT NOT NULL REFERENCES locations(id),
    kind             TEXT NOT NULL,
    entity           TEXT NOT NULL,
    severity         TEXT NOT NULL,
    state            TEXT NOT NULL,
    fired_at         BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    acknowledged_by  TEXT,
    acknowledged_at  BIGINT,
    context          TEXT NOT NULL,
    PRIMARY KEY (location_id, kind, entity)
);

CREATE TABLE alert_history (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    location_id  TEXT NOT NULL REFERENCES locations(id),
    kind         TEXT NOT NULL,
    entity       TEXT NOT NULL,
    severity     TEXT NOT NULL,
    state        TEXT NOT NULL,
    at           BIGINT NOT NULL,
    by_whom      TEXT,
    context      TEXT NOT NULL
);
CREATE INDEX alert_history_location ON alert_history(location_id, id);

CREATE TABLE alert_grace (
    location_id  TEXT NOT NULL REFERENCES locations(id),
    kind         TEXT NOT NULL,
    entity       TEXT NOT NULL,
    severity     TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (location_id, kind, entity)
);
CREATE INDEX alert_grace_expiry ON alert_grace(expires_at);

CREATE TABLE commands (
    id            TEXT PRIMARY KEY,
    device_id     TEXT NOT NULL REFERENCES devices(id),
    name          TEXT NOT NULL,
    params        TEXT NOT NULL,
    state         TEXT NOT NULL,
    issued_by     TEXT NOT NULL,
    issued_at     BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    delivered_at  BIGINT,
    answered_at   BIGINT,
    result        TEXT
);
CREATE INDEX commands_device ON commands(device_id, issued_at);
CREATE INDEX commands_open ON commands(state, expires_at);

CREATE TABLE users (
    id                 TEXT PRIMARY KEY,
    account_id         TEXT NOT NULL REFERENCES accounts(id),
    email              TEXT NOT NULL,
    password_hash      TEXT NOT NULL,
    role               TEXT NOT NULL,
    allowed_locations  TEXT,
    created_at         BIGINT NOT NULL,
    UNIQUE (account_id, email)
);

CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id),
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    token_hash    TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    last_used_at  BIGINT
);
CREATE INDEX api_tokens_account ON api_tokens(account_id);

CREATE TABLE notification_channels (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts(id),
    location_id  TEXT REFERENCES locations(id),
    kind         TEXT NOT NULL,
    target       TEXT NOT NULL,
    settings     TEXT NOT NULL,
    enabled      BOOLEAN NOT NULL
);
CREATE INDEX notification_channels_account ON notification_channels(account_id);

CREATE TABLE outbox (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id       TEXT NOT NULL REFERENCES accounts(id),
    channel_id       TEXT NOT NULL REFERENCES notification_channels(id),
    idempotency_key  TEXT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    sent_at          BIGINT,
    UNIQUE (account_id, idempotency_key)
);
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);

CREATE TABLE dead_letters (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic        TEXT NOT NULL,
    payload      BYTEA NOT NULL,
    payload_len  BIGINT NOT NULL,
    reason       TEXT NOT NULL,
    received_at  BIGINT NOT NULL
);
CREATE INDEX dead_letters_received ON dead_letters(received_at);

CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    entity      TEXT NOT NULL,
    before_json TEXT,
    after_json  TEXT,
    at          BIGINT NOT NULL
);
CREATE INDEX audit_log_account ON audit_log(account_id, id);
