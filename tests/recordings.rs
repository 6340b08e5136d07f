//! Recording rows in the store: start/stop through the writer, crash repair at startup,
//! retention. Run against SQLite (a temp dir) and, when `SWITCHBOARD_TEST_PG_URL` is set,
//! against PostgreSQL (a fresh schema per test), like `tests/store.rs`.

#[macro_use]
mod store_harness;

use std::path::{Path, PathBuf};

use store_harness::TestDb;
use switchboard::media::recorder::{
    ChannelMode, PoolConfig, RecorderPool, RecordingSpec, companion_path,
};
use switchboard::media::recordings::{purge_recordings, repair_recordings};
use switchboard::store::{
    CallId, EndedRecording, NewRecording, RecordingId, RecordingKind, RecordingState, SessionId,
    StoreCmd,
};

const T0: i64 = 1_700_000_000_000;
const DAY_MS: i64 = 86_400_000;

on_both!(
    recording_row_is_inserted_at_start_and_completed_at_stop,
    open_recordings_are_repaired_at_startup_and_missing_files_fail,
    retention_purge_deletes_old_files_and_marks_rows_deleted,
    kind_and_mailbox_are_stored_and_voicemails_are_listed_per_mailbox,
);

fn spec(data_dir: &Path, started_ms: i64) -> RecordingSpec {
    RecordingSpec {
        data_dir: data_dir.to_path_buf(),
        recording_id: RecordingId::new(),
        session_id: SessionId::new(),
        call_id: CallId::new(),
        started_ms,
        sample_rate: 8000,
        mode: ChannelMode::Stereo,
        mixed_companion: true,
    }
}

/// Records `frames` frames of a ramp and stops; returns the summary.
async fn record(
    pool: &RecorderPool,
    spec: &RecordingSpec,
    frames: usize,
) -> switchboard::media::recorder::RecordingSummary {
    let mut rec = pool.start(spec.clone()).expect("recording starts");
    let left: Vec<i16> = (0..160).map(|i| i * 10).collect();
    for _ in 0..frames {
        rec.write_frame(&left, &[]);
    }
    rec.stop().await.expect("summary")
}

fn sha_of(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).expect("read")))
}

fn test_pool() -> RecorderPool {
    RecorderPool::new(PoolConfig {
        queue_capacity: 4096,
        buffers_per_recording: 256,
    })
    .expect("pool")
}

async fn recording_row_is_inserted_at_start_and_completed_at_stop(db: TestDb) {
    let store = db.open().await;
    let s = spec(db.dir(), T0);
    store
        .writer()
        .send(StoreCmd::RecordingStarted(NewRecording::from_spec(&s)));
    store.flush().await.expect("flush");
    let open = store
        .get_recording(s.recording_id)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(open.state, RecordingState::Recording);
    assert_eq!(PathBuf::from(&open.path), s.relative_path());
    assert_eq!((open.channels, open.sample_rate), (2, 8000));
    assert_eq!(open.duration_ms, None);

    let summary = record(&test_pool(), &s, 50).await;
    store
        .writer()
        .send(StoreCmd::RecordingEnded(EndedRecording::complete(
            s.recording_id,
            &summary,
        )));
    store.flush().await.expect("flush");
    let done = store
        .get_recording(s.recording_id)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(done.state, RecordingState::Complete);
    assert_eq!(done.duration_ms, Some(1000));
    assert_eq!(done.size_bytes, Some(summary.size as i64));
    assert_eq!(done.sha256.as_deref(), Some(sha_of(&summary.path).as_str()));
    assert_eq!(done.ended_ms, Some(summary.ended_ms));
    assert_eq!(done.dropped_frames, 0);

    assert_eq!(
        store
            .recordings_for_session(s.session_id)
            .await
            .expect("by session"),
        vec![done.clone()]
    );
    assert_eq!(
        store.recordings_for_call(s.call_id).await.expect("by call"),
        vec![done]
    );
    assert!(
        store
            .recordings_for_call(CallId::new())
            .await
            .expect("other call")
            .is_empty()
    );
}

async fn open_recordings_are_repaired_at_startup_and_missing_files_fail(db: TestDb) {
    let store = db.open().await;
    // A recording whose process died: a 1 s file whose header sizes were never updated and
    // that ends in half a sample frame.
    let crashed = spec(db.dir(), T0);
    let summary = record(&test_pool(), &crashed, 50).await;
    for path in [summary.path.clone(), companion_path(&summary.path)] {
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[4..8].copy_from_slice(&0u32.to_le_bytes());
        bytes[40..44].copy_from_slice(&0u32.to_le_bytes());
        bytes.push(7);
        std::fs::write(&path, bytes).expect("write");
    }
    let missing = spec(db.dir(), T0);
    let mut escaping = NewRecording::from_spec(&spec(db.dir(), T0));
    escaping.path = "../outside.wav".into();
    let w = store.writer();
    w.send(StoreCmd::RecordingStarted(NewRecording::from_spec(
        &crashed,
    )));
    w.send(StoreCmd::RecordingStarted(NewRecording::from_spec(
        &missing,
    )));
    w.send(StoreCmd::RecordingStarted(escaping.clone()));
    store.flush().await.expect("flush");

    let counts = repair_recordings(&store, db.dir()).await.expect("repair");
    assert_eq!((counts.repaired, counts.failed), (1, 2));

    let row = store
        .get_recording(crashed.recording_id)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(row.state, RecordingState::Repaired);
    assert_eq!(row.duration_ms, Some(1000));
    assert_eq!(row.ended_ms, Some(T0 + 1000));
    assert_eq!(
        row.size_bytes,
        Some(summary.size as i64),
        "partial sample cut"
    );
    assert_eq!(row.sha256.as_deref(), Some(sha_of(&summary.path).as_str()));
    assert_eq!(
        row.sha256.as_deref(),
        Some(summary.sha256.as_str()),
        "as stopped"
    );
    let companion = hound::WavReader::open(companion_path(&summary.path)).expect("companion");
    assert_eq!(companion.duration(), 8000);

    for id in [missing.recording_id, escaping.id] {
        let row = store.get_recording(id).await.expect("get").expect("row");
        assert_eq!(row.state, RecordingState::Failed);
    }
    // Nothing left to repair: a second start-up does nothing.
    let again = repair_recordings(&store, db.dir()).await.expect("repair");
    assert_eq!((again.repaired, again.failed), (0, 0));
}

async fn retention_purge_deletes_old_files_and_marks_rows_deleted(db: TestDb) {
    let store = db.open().await;
    let pool = test_pool();
    let old = spec(db.dir(), T0 - 40 * DAY_MS);
    let young = spec(db.dir(), T0 - DAY_MS);
    let live = spec(db.dir(), T0 - 50 * DAY_MS);
    let w = store.writer();
    for s in [&old, &young, &live] {
        w.send(StoreCmd::RecordingStarted(NewRecording::from_spec(s)));
    }
    let old_summary = record(&pool, &old, 5).await;
    let young_summary = record(&pool, &young, 5).await;
    let live_rec = pool.start(live.clone()).expect("live recording");
    w.send(StoreCmd::RecordingEnded(EndedRecording::complete(
        old.recording_id,
        &old_summary,
    )));
    w.send(StoreCmd::RecordingEnded(EndedRecording::complete(
        young.recording_id,
        &young_summary,
    )));
    store.flush().await.expect("flush");

    assert_eq!(
        purge_recordings(&store, db.dir(), 0, T0)
            .await
            .expect("purge"),
        0,
        "0 days keeps everything"
    );
    assert!(old_summary.path.exists());

    assert_eq!(
        purge_recordings(&store, db.dir(), 30, T0)
            .await
            .expect("purge"),
        1
    );
    assert!(!old_summary.path.exists(), "old file deleted");
    assert!(
        !companion_path(&old_summary.path).exists(),
        "its companion too"
    );
    assert!(
        !old_summary.path.parent().expect("session dir").exists(),
        "empty directories are tidied"
    );
    assert!(db.dir().join("recordings").is_dir(), "the root stays");
    assert!(young_summary.path.exists(), "within retention");
    assert!(live_rec.path().exists(), "still recording");
    let state = |id| {
        let store = store.clone();
        async move {
            store
                .get_recording(id)
                .await
                .expect("get")
                .expect("row")
                .state
        }
    };
    assert_eq!(state(old.recording_id).await, RecordingState::Deleted);
    assert_eq!(state(young.recording_id).await, RecordingState::Complete);
    assert_eq!(state(live.recording_id).await, RecordingState::Recording);
    assert_eq!(
        purge_recordings(&store, db.dir(), 30, T0)
            .await
            .expect("purge"),
        0,
        "deleted rows are not purged twice"
    );
    live_rec.stop().await.expect("stop");
}

async fn kind_and_mailbox_are_stored_and_voicemails_are_listed_per_mailbox(db: TestDb) {
    let store = db.open().await;
    let pool = test_pool();
    let w = store.writer();
    // One call: a voicemail for "sales" first, then the call recording (same call id).
    let call_rec = spec(db.dir(), T0 + 10_000);
    let mut first_vm = spec(db.dir(), T0);
    first_vm.call_id = call_rec.call_id;
    first_vm.mode = ChannelMode::CallerOnly;
    let second_vm = spec(db.dir(), T0 + 60_000);
    let support_vm = spec(db.dir(), T0 + 5_000);
    let greeting = spec(db.dir(), T0 + 1_000);
    let old_vm = spec(db.dir(), T0 - 40 * DAY_MS);
    w.send(StoreCmd::RecordingStarted(
        NewRecording::from_spec(&second_vm).voicemail("sales"),
    ));
    w.send(StoreCmd::RecordingStarted(
        NewRecording::from_spec(&first_vm).voicemail("sales"),
    ));
    w.send(StoreCmd::RecordingStarted(NewRecording::from_spec(
        &call_rec,
    )));
    w.send(StoreCmd::RecordingStarted(
        NewRecording::from_spec(&support_vm).voicemail("support"),
    ));
    w.send(StoreCmd::RecordingStarted(
        NewRecording::from_spec(&greeting).with_kind(RecordingKind::Message, Some("sales".into())),
    ));
    w.send(StoreCmd::RecordingStarted(
        NewRecording::from_spec(&old_vm).voicemail("sales"),
    ));
    let old_summary = record(&pool, &old_vm, 5).await;
    w.send(StoreCmd::RecordingEnded(EndedRecording::complete(
        old_vm.recording_id,
        &old_summary,
    )));
    store.flush().await.expect("flush");

    let for_call = store
        .recordings_for_call(call_rec.call_id)
        .await
        .expect("by call");
    let kinds: Vec<_> = for_call
        .iter()
        .map(|r| (r.id, r.kind, r.mailbox.as_deref(), r.channels))
        .collect();
    assert_eq!(
        kinds,
        [
            (
                first_vm.recording_id,
                RecordingKind::Voicemail,
                Some("sales"),
                1
            ),
            (call_rec.recording_id, RecordingKind::Call, None, 2),
        ]
    );

    let ids = |rows: Vec<switchboard::store::RecordingRecord>| -> Vec<RecordingId> {
        rows.into_iter().map(|r| r.id).collect()
    };
    assert_eq!(
        ids(store.voicemails("sales").await.expect("sales")),
        [
            old_vm.recording_id,
            first_vm.recording_id,
            second_vm.recording_id
        ],
        "voicemails only (not the greeting), oldest first"
    );
    assert_eq!(
        ids(store.voicemails("support").await.expect("support")),
        [support_vm.recording_id]
    );
    assert!(store.voicemails("nobody").await.expect("none").is_empty());

    // Retention removes voicemails like any recording; deleted ones are no longer listed.
    assert_eq!(
        purge_recordings(&store, db.dir(), 30, T0)
            .await
            .expect("purge"),
        1
    );
    assert_eq!(
        ids(store.voicemails("sales").await.expect("sales")),
        [first_vm.recording_id, second_vm.recording_id]
    );
    let message = store
        .get_recording(greeting.recording_id)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(
        (message.kind, message.kind.as_str()),
        (RecordingKind::Message, "message")
    );
}
