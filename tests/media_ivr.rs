//! The media session as the IVR uses it, over real sockets on 127.0.0.1: a call answered
//! locally (only the caller's leg has media), a voicemail recorded caller-only and stopped in
//! the middle of the call (its summary comes back as an event, the media task never waits for
//! the disk), a second recording started later, and silence detection.
//!
//! Events are awaited under a timeout, never slept on.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use switchboard::media::codec::CodecKind;
use switchboard::media::engine::{MediaCommand, MediaEvent, MediaSession, PipelineConfig};
use switchboard::media::negotiate::LegMedia;
use switchboard::media::ports::{Leg, PortPool};
use switchboard::media::recorder::{
    ChannelMode, PoolConfig, RecorderPool, RecordingSpec, RecordingSummary,
};
use switchboard::store::{CallId, RecordingId, SessionId};
use tokio::sync::mpsc;
use tokio::time::timeout;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const GUARD: Duration = Duration::from_secs(5);

/// A slice of ports of its own per test (below the ephemeral range, away from
/// `tests/media_session.rs`'s slices).
fn pool(pairs: u16) -> PortPool {
    static NEXT: AtomicU16 = AtomicU16::new(21000);
    let low = NEXT.fetch_add(pairs * 2 + 16, Ordering::Relaxed);
    PortPool::new(low, low + pairs * 2 - 1).expect("valid test range")
}

fn recorder_pool() -> RecorderPool {
    RecorderPool::new(PoolConfig {
        queue_capacity: 4096,
        buffers_per_recording: 256,
    })
    .expect("recorder pool")
}

fn spec(dir: &std::path::Path, mode: ChannelMode) -> RecordingSpec {
    RecordingSpec {
        data_dir: dir.to_path_buf(),
        recording_id: RecordingId::new(),
        session_id: SessionId::new(),
        call_id: CallId::new(),
        started_ms: 1_700_000_000_000,
        sample_rate: 8000,
        mode,
        mixed_companion: false,
    }
}

/// An IVR call: two legs bound, only the caller's has media.
fn ivr_call(pool: &PortPool) -> (MediaSession, mpsc::UnboundedReceiver<MediaEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let session =
        MediaSession::open(pool, LOCALHOST, 2, PipelineConfig::default(), tx).expect("opens");
    session.command(MediaCommand::SetMedia {
        leg: Leg::A,
        media: Some(LegMedia {
            codec: CodecKind::Pcmu,
            payload_type: 0,
            telephone_event: Some(101),
        }),
    });
    (session, rx)
}

async fn next_event(
    events: &mut mpsc::UnboundedReceiver<MediaEvent>,
    want: impl Fn(&MediaEvent) -> bool,
) -> MediaEvent {
    timeout(GUARD, async {
        loop {
            let ev = events.recv().await.expect("media session alive");
            if want(&ev) {
                return ev;
            }
        }
    })
    .await
    .expect("event within the guard")
}

async fn stopped_summary(events: &mut mpsc::UnboundedReceiver<MediaEvent>) -> RecordingSummary {
    match next_event(events, |e| matches!(e, MediaEvent::RecordingStopped { .. })).await {
        MediaEvent::RecordingStopped { result } => result.expect("recording finalised"),
        _ => unreachable!("filtered"),
    }
}

#[tokio::test]
async fn a_voicemail_stopped_mid_call_is_reported_and_a_later_recording_ends_with_the_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recorders = recorder_pool();
    let ports = pool(2);
    let (session, mut events) = ivr_call(&ports);

    let voicemail = spec(dir.path(), ChannelMode::CallerOnly);
    let recorder = recorders
        .start(voicemail.clone())
        .expect("voicemail starts");
    session.command(MediaCommand::StartRecording(recorder));
    session.command(MediaCommand::StopRecording);
    let summary = stopped_summary(&mut events).await;
    assert_eq!(summary.path, voicemail.path());
    assert_eq!(summary.channels, 1);
    assert!(summary.path.exists());
    assert_eq!(summary.sha256.len(), 64);

    // The call goes on: a call recording started later is the one the stop report carries.
    let later = spec(dir.path(), ChannelMode::Stereo);
    let recorder = recorders.start(later.clone()).expect("recording starts");
    session.command(MediaCommand::StartRecording(recorder));
    let report = timeout(GUARD, session.stop()).await.expect("stops");
    let last = report
        .recording
        .expect("the running recording is finalised");
    assert_eq!(last.path, later.path());
    assert_eq!(last.channels, 2);
    assert!(report.pipeline.legs[0].is_some());
    assert!(report.pipeline.legs[1].is_none(), "leg B never had media");
}

#[tokio::test]
async fn a_stopped_recording_is_not_in_the_stop_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recorders = recorder_pool();
    let ports = pool(2);
    let (session, mut events) = ivr_call(&ports);
    let recorder = recorders
        .start(spec(dir.path(), ChannelMode::CallerOnly))
        .expect("starts");
    session.command(MediaCommand::StartRecording(recorder));
    session.command(MediaCommand::StopRecording);
    stopped_summary(&mut events).await;
    let report = timeout(GUARD, session.stop()).await.expect("stops");
    assert!(report.recording.is_none());
}

#[tokio::test]
async fn a_caller_who_sends_nothing_is_reported_silent_once() {
    let ports = pool(2);
    let (session, mut events) = ivr_call(&ports);
    session.command(MediaCommand::DetectSilence {
        leg: Leg::A,
        after: Some(Duration::from_millis(200)),
    });
    let ev = next_event(&mut events, |e| matches!(e, MediaEvent::Silence { .. })).await;
    assert_eq!(ev, MediaEvent::Silence { leg: Leg::A });
    // Reported once: nothing more comes before the session stops.
    timeout(GUARD, session.stop()).await.expect("stops");
    while let Ok(ev) = events.try_recv() {
        assert!(!matches!(ev, MediaEvent::Silence { .. }), "{ev:?}");
    }
}
