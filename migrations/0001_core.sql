-- Keygate core schema. D1 is the source of truth; KV holds the projection the edge reads
-- (docs/storage.md). Times are epoch milliseconds. Secrets are stored only as SHA-256 hashes.

CREATE TABLE consumers (
  id            TEXT PRIMARY KEY,
  name          TEXT NOT NULL,
  metadata      TEXT,              -- JSON object
  rate_limit    TEXT,              -- JSON { limit, periodSeconds }
  monthly_quota INTEGER,
  webhook_url   TEXT,
  status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deleted')),
  created_at    INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL,
  deleted_at    INTEGER
);
CREATE INDEX consumers_by_created ON consumers (created_at, id);

CREATE TABLE keys (
  id              TEXT PRIMARY KEY,
  consumer_id     TEXT NOT NULL REFERENCES consumers (id),
  name            TEXT,
  metadata        TEXT,
  rate_limit      TEXT,
  status          TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
  current_version INTEGER NOT NULL,
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL,
  revoked_at      INTEGER,
  revoke_reason   TEXT
);
CREATE INDEX keys_by_consumer ON keys (consumer_id, created_at, id);

CREATE TABLE key_versions (
  key_id       TEXT NOT NULL REFERENCES keys (id),
  version      INTEGER NOT NULL,
  secret_hash  TEXT NOT NULL UNIQUE,
  hint         TEXT NOT NULL,
  scopes       TEXT NOT NULL,      -- JSON array
  status       TEXT NOT NULL CHECK (status IN ('active', 'grace', 'expired', 'revoked')),
  created_at   INTEGER NOT NULL,
  expires_at   INTEGER,
  grace_until  INTEGER,
  retired_at   INTEGER,
  last_used_at INTEGER,
  PRIMARY KEY (key_id, version)
);

CREATE TABLE rotations (
  id                       TEXT PRIMARY KEY,
  key_id                   TEXT NOT NULL REFERENCES keys (id),
  consumer_id              TEXT NOT NULL REFERENCES consumers (id),
  state                    TEXT NOT NULL CHECK (state IN ('in_progress', 'completed', 'rolled_back')),
  from_version             INTEGER NOT NULL,
  to_version               INTEGER NOT NULL,
  started_at               INTEGER NOT NULL,
  grace_period_ms          INTEGER NOT NULL,
  grace_until              INTEGER,
  grace_starts_on_first_use INTEGER NOT NULL DEFAULT 0,
  complete_when_idle_ms    INTEGER,
  first_used_at            INTEGER,
  ended_at                 INTEGER,
  end_reason               TEXT
);
CREATE INDEX rotations_by_key ON rotations (key_id, started_at, id);
CREATE INDEX rotations_open_by_consumer ON rotations (consumer_id) WHERE state = 'in_progress';
-- the database itself refuses a second open rotation of one key
CREATE UNIQUE INDEX rotations_one_open_per_key ON rotations (key_id) WHERE state = 'in_progress';

CREATE TABLE audit_events (
  id          TEXT PRIMARY KEY,
  at          INTEGER NOT NULL,
  actor       TEXT NOT NULL,
  action      TEXT NOT NULL,
  consumer_id TEXT,
  key_id      TEXT,
  target      TEXT NOT NULL,
  details     TEXT NOT NULL,       -- JSON object; never a secret
  request_id  TEXT
);
CREATE INDEX audit_by_at ON audit_events (at, id);
CREATE INDEX audit_by_consumer ON audit_events (consumer_id, at, id);
CREATE INDEX audit_by_key ON audit_events (key_id, at, id);
CREATE INDEX audit_by_action ON audit_events (action, at, id);

CREATE TABLE idempotency_records (
  scope        TEXT NOT NULL,      -- actor that sent the request
  key          TEXT NOT NULL,      -- the Idempotency-Key header
  fingerprint  TEXT NOT NULL,      -- SHA-256 of method, path and body
  state        TEXT NOT NULL CHECK (state IN ('pending', 'done')),
  status       INTEGER,
  body         TEXT,               -- the first response, plaintext secret removed
  created_at   INTEGER NOT NULL,
  PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_by_created ON idempotency_records (created_at);

CREATE TABLE usage_hourly (
  key_id   TEXT NOT NULL,
  version  INTEGER NOT NULL,
  hour     INTEGER NOT NULL,       -- epoch ms of the hour's start
  requests INTEGER NOT NULL,
  PRIMARY KEY (key_id, version, hour)
);
