-- Scheduled maintenance (src/maintenance, docs/storage.md "Scheduled maintenance"): the
-- reminders it has sent, so each is sent once, and where its bounded walks stopped.

CREATE TABLE maintenance_notices (
  kind           TEXT NOT NULL CHECK (kind IN ('rotation.grace_ending', 'key.expiring', 'key.rotation_due')),
  subject        TEXT NOT NULL,    -- rotation id, or '<key id>:<version>'
  consumer_id    TEXT NOT NULL,
  key_id         TEXT NOT NULL,
  audit_event_id TEXT NOT NULL,    -- the audit event written in the same batch
  sent_at        INTEGER NOT NULL,
  emitted_at     INTEGER,          -- handed to webhook delivery; null until then
  PRIMARY KEY (kind, subject)
);
CREATE INDEX maintenance_notices_unemitted ON maintenance_notices (sent_at) WHERE emitted_at IS NULL;

CREATE TABLE maintenance_cursors (
  name       TEXT PRIMARY KEY,     -- 'keys' (D1 walk) or 'kv' (KV list walk)
  value      TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);

-- what the maintenance queries look for, without scanning every version
CREATE INDEX maintenance_rotations_by_grace ON rotations (grace_until) WHERE state = 'in_progress';
CREATE INDEX maintenance_versions_by_expiry ON key_versions (expires_at)
  WHERE status IN ('active', 'grace') AND expires_at IS NOT NULL;
CREATE INDEX maintenance_versions_by_created ON key_versions (created_at) WHERE status = 'active';
