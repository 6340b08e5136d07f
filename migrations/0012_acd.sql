-- switchboard schema v12: agents and queues (issue 13). Portable SQL, as 0001.
-- An agent is reached on the phones registered for their extension; skills are a JSON
-- object {"support": 5}; `presence` is what the agent (or a supervisor) chose last
-- (available, break, offline), kept across restarts. Every visible state change (busy and
-- wrap-up too) is a row of agent_states. A task is one contact (a call or a chat) in a queue:
-- when it joined, when an agent took it, how it left; the KPIs are computed from these rows.
CREATE TABLE agents (
    id               TEXT PRIMARY KEY,
    extension        TEXT NOT NULL,
    name             TEXT,
    skills           TEXT NOT NULL,
    voice            INTEGER NOT NULL,
    chat             INTEGER NOT NULL,
    no_chat_on_call  INTEGER NOT NULL,
    supervisor       INTEGER NOT NULL,
    presence         TEXT NOT NULL,
    reason           TEXT,
    created_ms       BIGINT NOT NULL,
    updated_ms       BIGINT NOT NULL
);
CREATE INDEX agents_extension ON agents (extension);

CREATE TABLE agent_states (
    agent_id  TEXT NOT NULL,
    at_ms     BIGINT NOT NULL,
    state     TEXT NOT NULL,
    reason    TEXT
);
CREATE INDEX agent_states_by_agent ON agent_states (agent_id, at_ms);

CREATE TABLE tasks (
    id               TEXT PRIMARY KEY,
    queue            TEXT NOT NULL,
    media            TEXT NOT NULL,
    session_id       TEXT,
    call_id          TEXT,
    conversation_id  TEXT,
    priority         INTEGER NOT NULL,
    joined_ms        BIGINT NOT NULL,
    agent_id         TEXT,
    answered_ms      BIGINT,
    left_ms          BIGINT,
    outcome          TEXT,
    ended_ms         BIGINT
);
CREATE INDEX tasks_by_queue ON tasks (queue, joined_ms);
CREATE INDEX tasks_by_agent ON tasks (agent_id, answered_ms);

-- Customer priority (issue 13): flows and queue steps read them as `customer.vip` and
-- `customer.NAME`.
ALTER TABLE customers ADD COLUMN vip INTEGER NOT NULL DEFAULT 0;
ALTER TABLE customers ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
