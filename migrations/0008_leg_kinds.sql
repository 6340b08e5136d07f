-- Legs of every kind (issue 11): besides SIP dialogs, a call's legs may be a local endpoint
-- (the IVR's own answer), a conference room, a queue waiting for an agent, a browser (WebRTC)
-- or a supervisor's monitor. Only SIP legs have a Call-ID and a remote URI. Rebuilt (SQLite
-- cannot drop NOT NULL or change a CHECK in place); every existing leg is a SIP leg.
CREATE TABLE call_legs_v2 (
    id                    TEXT PRIMARY KEY,
    call_id               TEXT NOT NULL REFERENCES calls (id),
    role                  TEXT NOT NULL CHECK (role IN ('caller', 'callee', 'monitor')),
    kind                  TEXT NOT NULL DEFAULT 'sip'
                          CHECK (kind IN ('sip', 'local', 'conference', 'queue', 'webrtc')),
    sip_call_id           TEXT,
    remote_uri            TEXT,
    started_ms            BIGINT NOT NULL,
    answered_ms           BIGINT,
    ended_ms              BIGINT,
    final_code            BIGINT,
    codec                 TEXT,
    rtp_packets_received  BIGINT,
    rtp_packets_sent      BIGINT,
    rtp_packets_lost      BIGINT,
    jitter_ms             DOUBLE PRECISION,
    rtt_ms                DOUBLE PRECISION,
    mos                   DOUBLE PRECISION
);
INSERT INTO call_legs_v2 (id, call_id, role, kind, sip_call_id, remote_uri, started_ms,
                          answered_ms, ended_ms, final_code, codec, rtp_packets_received,
                          rtp_packets_sent, rtp_packets_lost, jitter_ms, rtt_ms, mos)
    SELECT id, call_id, role, 'sip', sip_call_id, remote_uri, started_ms, answered_ms, ended_ms,
           final_code, codec, rtp_packets_received, rtp_packets_sent, rtp_packets_lost,
           jitter_ms, rtt_ms, mos
    FROM call_legs;
DROP TABLE call_legs;
ALTER TABLE call_legs_v2 RENAME TO call_legs;
CREATE INDEX call_legs_call ON call_legs (call_id);
