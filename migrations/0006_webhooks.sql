-- switchboard schema v6: webhook subscriptions (issue 5). Portable SQL, as 0001.
-- One row per subscription; it is also the delivery cursor: `last_delivered_seq` is the last
-- event (in the log's order) the receiver acknowledged with a 2xx, so a restart resumes after
-- it. `types` is a JSON array of event types (`call.ended`, or `call.*` for a prefix).
-- `secret` signs the deliveries (HMAC-SHA256), so it is kept as given, not hashed.
-- attempts / last_status / last_error / next_attempt_ms describe the event being retried.
CREATE TABLE webhooks (
    id                  TEXT PRIMARY KEY,
    url                 TEXT NOT NULL,
    types               TEXT NOT NULL,
    secret              TEXT NOT NULL,
    created_ms          BIGINT NOT NULL,
    last_delivered_seq  BIGINT NOT NULL,
    attempts            BIGINT NOT NULL DEFAULT 0,
    last_status         BIGINT,
    last_error          TEXT,
    next_attempt_ms     BIGINT
);
