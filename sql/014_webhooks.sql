-- Up Migration
-- Operational webhooks (docs/notifications.md). The URLs each kind of notification is posted to, set by
-- PUT /notifications; a kind with a row here ignores NOTIFY_WEBHOOKS (an empty array: posted nowhere). Kinds:
-- journal/kinds.ts NOTIFICATION_KINDS.
CREATE TABLE notification_endpoints (
  kind       text        PRIMARY KEY
             CHECK (kind IN ('dlq_parked', 'dlq_group_growing', 'replay_completed', 'replay_failed', 'erasure_completed')),
  urls       text[]      NOT NULL,
  updated_by text        NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every delivery attempt of every notification (one Temporal workflow per notification and URL, its id in
-- delivery_id): what the receiver answered or why it could not. Statuses: journal/kinds.ts
-- NOTIFICATION_DELIVERY_STATUSES ('abandoned' = the last attempt failed too).
CREATE TABLE notification_deliveries (
  id              bigserial   PRIMARY KEY,
  delivery_id text        NOT NULL,
  kind            text        NOT NULL
                  CHECK (kind IN ('dlq_parked', 'dlq_group_growing', 'replay_completed', 'replay_failed', 'erasure_completed')),
  url             text        NOT NULL,
  attempt         integer     NOT NULL,
  status          text        NOT NULL CHECK (status IN ('delivered', 'failed', 'abandoned')),
  http_status     integer,
  error           text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (delivery_id, attempt)
);
CREATE INDEX idx_notification_deliveries_kind ON notification_deliveries (kind, id DESC);

