-- switchboard schema v11: one customer identity (issue 12). Portable SQL, as 0001.
-- A merged customer keeps its row with a pointer to the one that absorbed it. Each merge
-- records what it moved (identities and sessions, JSON arrays) so a split can move exactly
-- that back. A conflict is a contact whose identities belonged to two customers (a phone of
-- one and an email of another): stored and shown, never merged silently.
ALTER TABLE customers ADD COLUMN merged_into TEXT;

CREATE TABLE customer_merges (
    id          TEXT PRIMARY KEY,
    into_id     TEXT NOT NULL REFERENCES customers (id),
    from_id     TEXT NOT NULL REFERENCES customers (id),
    identities  TEXT NOT NULL,
    sessions    TEXT NOT NULL,
    merged_ms   BIGINT NOT NULL,
    split_ms    BIGINT
);
CREATE INDEX customer_merges_pair ON customer_merges (into_id, from_id);

CREATE TABLE customer_conflicts (
    id                 TEXT PRIMARY KEY,
    customer_id        TEXT NOT NULL REFERENCES customers (id),
    other_customer_id  TEXT NOT NULL REFERENCES customers (id),
    kind               TEXT NOT NULL,
    value              TEXT NOT NULL,
    other_kind         TEXT NOT NULL,
    other_value        TEXT NOT NULL,
    created_ms         BIGINT NOT NULL,
    UNIQUE (customer_id, other_customer_id)
);

-- Small facts about the database itself (e.g. which phone-number rules the stored phone
-- identities were normalised with).
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
