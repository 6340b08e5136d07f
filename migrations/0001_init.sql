-- switchboard schema v1 (DESIGN §4, §5). Portable SQL: the same file runs on SQLite and
-- PostgreSQL. Ids are TEXT (UUIDv7 made in Rust), times are BIGINT Unix milliseconds,
-- JSON is stored as TEXT. No AUTOINCREMENT/SERIAL: the event sequence comes from the
-- single writer task.

-- SIP users (extensions). Only digest HA1 values are kept, never the password.
CREATE TABLE users (
    ext         TEXT PRIMARY KEY,
    name        TEXT,
    ha1_md5     TEXT NOT NULL,
    ha1_sha256  TEXT NOT NULL,
    realm       TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);

-- Registrar bindings (RFC 3261 §10). source_* is where the REGISTER came from (NAT).
CREATE TABLE registrations (
    id              TEXT PRIMARY KEY,
    ext             TEXT NOT NULL,
    contact_uri     TEXT NOT NULL,
    transport       TEXT NOT NULL,
    source_addr     TEXT NOT NULL,
    call_id         TEXT NOT NULL,
    cseq            BIGINT NOT NULL,
    expires_at_ms   BIGINT NOT NULL,
    user_agent      TEXT,
    q_milli         BIGINT,
    updated_ms      BIGINT NOT NULL,
    UNIQUE (ext, contact_uri)
);
CREATE INDEX registrations_expires ON registrations (expires_at_ms);

-- Customers and the identities that resolve to them (phone number, SIP URI, email, chat id).
CREATE TABLE customers (
    id            TEXT PRIMARY KEY,
    display_name  TEXT,
    created_ms    BIGINT NOT NULL
);

CREATE TABLE customer_identities (
    kind         TEXT NOT NULL,
    value        TEXT NOT NULL,
    customer_id  TEXT NOT NULL REFERENCES customers (id),
    created_ms   BIGINT NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX customer_identities_customer ON customer_identities (customer_id);

-- One customer contact across channels.
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    customer_id  TEXT REFERENCES customers (id),
    channel      TEXT NOT NULL,
    started_ms   BIGINT NOT NULL,
    ended_ms     BIGINT,
    attributes   TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX sessions_customer ON sessions (customer_id);

-- Call records. duration_s/billable_s are filled when the call ends.
CREATE TABLE calls (
    id            TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL REFERENCES sessions (id),
    sip_call_id   TEXT NOT NULL,
    direction     TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound', 'internal')),
    caller        TEXT NOT NULL,
    callee        TEXT NOT NULL,
    started_ms    BIGINT NOT NULL,
    answered_ms   BIGINT,
    ended_ms      BIGINT,
    duration_s    BIGINT,
    billable_s    BIGINT,
    hangup_cause  TEXT,
    hangup_by     TEXT CHECK (hangup_by IN ('caller', 'callee', 'system')),
    final_code    BIGINT
);
CREATE INDEX calls_session ON calls (session_id);
CREATE INDEX calls_sip_call_id ON calls (sip_call_id);
CREATE INDEX calls_open ON calls (started_ms) WHERE ended_ms IS NULL;

CREATE TABLE call_legs (
    id           TEXT PRIMARY KEY,
    call_id      TEXT NOT NULL REFERENCES calls (id),
    role         TEXT NOT NULL CHECK (role IN ('caller', 'callee')),
    sip_call_id  TEXT NOT NULL,
    remote_uri   TEXT NOT NULL,
    started_ms   BIGINT NOT NULL,
    answered_ms  BIGINT,
    ended_ms     BIGINT,
    final_code   BIGINT
);
CREATE INDEX call_legs_call ON call_legs (call_id);

-- The durable, append-only event log. seq is assigned by the single writer task.
CREATE TABLE events (
    seq         BIGINT PRIMARY KEY,
    at_ms       BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    session_id  TEXT,
    call_id     TEXT,
    data        TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_session ON events (session_id);
