-- Media quality per call leg (RFC 3550 statistics and an ITU-T G.107 E-model MOS), written
-- when the leg's media session ends. NULL for legs that never had media.
ALTER TABLE call_legs ADD COLUMN codec TEXT;
ALTER TABLE call_legs ADD COLUMN rtp_packets_received BIGINT;
ALTER TABLE call_legs ADD COLUMN rtp_packets_sent BIGINT;
ALTER TABLE call_legs ADD COLUMN rtp_packets_lost BIGINT;
ALTER TABLE call_legs ADD COLUMN jitter_ms DOUBLE PRECISION;
ALTER TABLE call_legs ADD COLUMN rtt_ms DOUBLE PRECISION;
ALTER TABLE call_legs ADD COLUMN mos DOUBLE PRECISION;
