-- Scheduled maintenance prunes what is kept only for a while (README "Scheduled maintenance"):
-- webhook deliveries settled (delivered or given up) more than 30 days ago. Idempotency
-- records are found by idempotency_by_created (0001).

CREATE INDEX webhook_deliveries_settled ON webhook_deliveries (updated_at)
  WHERE status IN ('delivered', 'failed');
