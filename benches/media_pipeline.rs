//! CPU cost of one call's media pipeline per 20 ms frame, in virtual time (no sockets, no
//! sleeps): both parties send one packet, the frame tick runs, everything sent is drained.
//!
//! Run: `cargo bench --bench media_pipeline`. The budget this guards: ≥ 500 processed calls per
//! core, i.e. ≤ 40 µs per call per frame. `scripts/bench` measures the same paths end to end.
//! * `relay_pcmu`: same codec both ways, restamped and relayed (plus in-band DTMF detection on
//!   the leg without telephone-event, as with SIPp's built-in uas).
//! * `transcode_pcmu_opus`: the caller sends PCMU, the callee Opus: decode, (resample),
//!   encode both ways.
#![allow(clippy::disallowed_methods)] // a test measures real time, not the server's clock

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use switchboard::media::codec::{self, CodecKind};
use switchboard::media::engine::{MediaCommand, Pipeline, PipelineConfig};
use switchboard::media::negotiate::LegMedia;
use switchboard::media::ports::Leg;

const FRAME: Duration = Duration::from_millis(20);

/// One party's packet stream: a 440 Hz tone, encoded once, replayed with rising seq/ts.
struct Stream {
    payloads: Vec<Vec<u8>>,
    pt: u8,
    step: u32,
    seq: u16,
    ts: u32,
    packet: Vec<u8>,
}

impl Stream {
    fn new(kind: CodecKind, pt: u8, rate: u32) -> Self {
        let mut enc = codec::encoder(kind, rate).expect("encoder");
        let n = (rate / 50) as usize;
        let payloads = (0..50)
            .map(|f| {
                let pcm: Vec<i16> = (0..n)
                    .map(|i| {
                        let t = (f * n + i) as f32 / rate as f32;
                        (8000.0 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()) as i16
                    })
                    .collect();
                let mut out = Vec::new();
                enc.encode(&pcm, &mut out).expect("encode");
                out
            })
            .collect();
        Self {
            payloads,
            pt,
            step: kind.rtp_timestamp_step(),
            seq: 1,
            ts: 0,
            packet: Vec::with_capacity(1500),
        }
    }

    fn next(&mut self) -> &mut [u8] {
        let payload = &self.payloads[usize::from(self.seq) % self.payloads.len()];
        self.packet.clear();
        self.packet.extend_from_slice(&[0x80, self.pt]);
        self.packet.extend_from_slice(&self.seq.to_be_bytes());
        self.packet.extend_from_slice(&self.ts.to_be_bytes());
        self.packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        self.packet.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(self.step);
        &mut self.packet
    }
}

struct Call {
    pipeline: Pipeline,
    now: Instant,
    a: Stream,
    b: Stream,
}

impl Call {
    fn new(a: (CodecKind, u8), b: (CodecKind, u8)) -> Self {
        let now = Instant::now();
        let mut pipeline = Pipeline::new(PipelineConfig::default(), now);
        for (leg, (codec, payload_type)) in [(Leg::A, a), (Leg::B, b)] {
            let media = LegMedia {
                codec,
                payload_type,
                telephone_event: (leg == Leg::A).then_some(101),
            };
            pipeline.command(
                now,
                MediaCommand::SetMedia {
                    leg,
                    media: Some(media),
                },
            );
        }
        let rate = |k: CodecKind| if k == CodecKind::Opus { 16_000 } else { 8000 };
        let mut call = Self {
            pipeline,
            now,
            a: Stream::new(a.0, a.1, rate(a.0)),
            b: Stream::new(b.0, b.1, rate(b.0)),
        };
        for _ in 0..100 {
            call.frame(); // past the jitter buffer's start-up
        }
        call
    }

    /// One 20 ms frame of the call; returns the datagrams sent.
    fn frame(&mut self) -> usize {
        self.now += FRAME;
        let now = self.now;
        let mut sent = 0;
        for (leg, stream) in [(Leg::A, &mut self.a), (Leg::B, &mut self.b)] {
            let action = self.pipeline.on_rtp(now, leg, stream.next());
            sent += usize::from(action == switchboard::media::engine::pipeline::RtpAction::Forward);
        }
        self.pipeline.on_timeout(now);
        while self.pipeline.poll_transmit().is_some() {
            sent += 1;
        }
        while self.pipeline.poll_event().is_some() {}
        sent
    }
}

fn bench(c: &mut Criterion) {
    let mut relay = Call::new((CodecKind::Pcmu, 0), (CodecKind::Pcmu, 0));
    c.bench_function("relay_pcmu", |b| b.iter(|| black_box(relay.frame())));
    let mut transcode = Call::new((CodecKind::Pcmu, 0), (CodecKind::Opus, 96));
    c.bench_function("transcode_pcmu_opus", |b| {
        b.iter(|| black_box(transcode.frame()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
