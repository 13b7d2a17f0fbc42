-- Deployment-wide values Keygate makes for itself on first use (docs/storage.md "Settings"):
-- the first writer wins (INSERT OR IGNORE), so every isolate reads the same value.
-- 'cursor_key': the HMAC key that signs list cursors (src/store/cursors.ts).

CREATE TABLE settings (
  name       TEXT PRIMARY KEY,
  value      TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
