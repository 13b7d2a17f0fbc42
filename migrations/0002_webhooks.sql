-- Webhook deliveries to consumers (docs/storage.md, "Webhooks"). A row is written in the same
-- D1 batch as the change it reports, so a change that landed always has its deliveries, and
-- the consumer's KeyCoordinator delivers the pending ones from its alarm. Times are epoch
-- milliseconds. The payload is the exact JSON body that is signed and sent: never a secret.

CREATE TABLE webhook_deliveries (
  id               TEXT PRIMARY KEY,   -- whd_…
  consumer_id      TEXT NOT NULL REFERENCES consumers (id),
  event_id         TEXT NOT NULL,      -- the webhook-id header: the same on every attempt
  event_type       TEXT NOT NULL,
  payload          TEXT NOT NULL,      -- JSON { type, timestamp, data }
  status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts         INTEGER NOT NULL DEFAULT 0,
  next_attempt_at  INTEGER,            -- null once delivered or failed
  last_attempt_at  INTEGER,
  last_status_code INTEGER,            -- null when no HTTP answer came (timeout, refused)
  last_error       TEXT,
  url              TEXT,               -- where the last attempt went
  redelivery_of    TEXT,               -- the delivery this one re-sends, if any
  created_at       INTEGER NOT NULL,
  updated_at       INTEGER NOT NULL,
  delivered_at     INTEGER
);
CREATE INDEX webhook_deliveries_by_consumer ON webhook_deliveries (consumer_id, created_at, id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (consumer_id, next_attempt_at)
  WHERE status = 'pending';
-- an event is enqueued once per consumer; redeliveries are separate rows of the same event
CREATE UNIQUE INDEX webhook_deliveries_one_per_event ON webhook_deliveries (consumer_id, event_id)
  WHERE redelivery_of IS NULL;
