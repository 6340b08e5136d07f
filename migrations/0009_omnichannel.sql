-- switchboard schema v9: omnichannel (issue 12). Portable SQL, as 0001.
-- A channel is a row: `web` (the chat widget) exists from here on; gateways (SMS, WhatsApp,
-- a bot) are added through the API with the URL their replies are POSTed to, signed with
-- `secret` (kept as given: it signs). attempts / last_status / last_error / next_attempt_ms
-- describe the reply being retried (replies go out one at a time, in order).
CREATE TABLE channels (
    name             TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    webhook_url      TEXT,
    secret           TEXT,
    created_ms       BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    last_status      BIGINT,
    last_error       TEXT,
    next_attempt_ms  BIGINT
);
INSERT INTO channels (name, kind, created_ms) VALUES ('web', 'web', 0);

-- The last call or message of a session, Unix ms: a session stays joinable by the same
-- customer for the continuity window after it.
ALTER TABLE sessions ADD COLUMN last_activity_ms BIGINT;
UPDATE sessions SET last_activity_ms = COALESCE(ended_ms, started_ms);

-- A conversation: one session, one channel, one contact (the customer's address on the
-- channel: a gateway user id, a phone number, a web visitor id).
CREATE TABLE conversations (
    id          TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions (id),
    channel     TEXT NOT NULL REFERENCES channels (name),
    contact     TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('open', 'closed')),
    started_ms  BIGINT NOT NULL,
    ended_ms    BIGINT
);
CREATE INDEX conversations_session ON conversations (session_id);
CREATE INDEX conversations_contact ON conversations (channel, contact, state);

-- Messages, in the order written. external_id is the gateway's id, unique per channel (a
-- retried delivery from the gateway is stored once; NULLs do not collide). body is stored
-- after masking (card numbers), never in clear.
CREATE TABLE messages (
    id               TEXT PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id),
    channel          TEXT NOT NULL,
    external_id      TEXT,
    author_kind      TEXT NOT NULL CHECK (author_kind IN ('customer', 'agent', 'bot', 'system')),
    author_name      TEXT,
    body             TEXT NOT NULL,
    created_ms       BIGINT NOT NULL,
    delivered_ms     BIGINT,
    read_ms          BIGINT,
    UNIQUE (channel, external_id)
);
CREATE INDEX messages_conversation ON messages (conversation_id, created_ms);
CREATE INDEX messages_undelivered ON messages (channel, created_ms) WHERE delivered_ms IS NULL;
