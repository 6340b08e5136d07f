//! The ACD's part of the store (issue 13) on SQLite and PostgreSQL: agents (add, duplicate,
//! update keeping the presence, remove), state changes through the writer (the chosen presence
//! kept), tasks and the figures computed from them, and customers' VIP flag and attributes.

#[macro_use]
mod store_harness;

use std::collections::BTreeMap;

use store_harness::TestDb;
use switchboard::store::{
    AgentRecord, Identity, IdentityKind, NewTask, Profile, StoreCmd, StoreError, TaskStats,
};

const T0: i64 = 1_700_000_000_000;

on_both!(
    agents_add_update_keep_presence_and_remove,
    tasks_give_service_level_answer_and_handle_times,
    customers_created_ahead_and_patched_give_their_profiles,
);

fn agent(id: &str) -> AgentRecord {
    AgentRecord {
        id: id.into(),
        extension: "2101".into(),
        name: Some("Ann".into()),
        skills: vec![("english".into(), 3), ("support".into(), 5)],
        voice: 1,
        chat: 3,
        no_chat_on_call: true,
        supervisor: false,
        presence: "offline".into(),
        reason: None,
        created_ms: T0,
        updated_ms: T0,
    }
}

async fn agents_add_update_keep_presence_and_remove(db: TestDb) {
    let store = db.open().await;
    store.add_agent(&agent("ann")).await.expect("add");
    assert!(matches!(
        store.add_agent(&agent("ann")).await,
        Err(StoreError::AlreadyExists(_))
    ));
    let w = store.writer();
    w.send(StoreCmd::AgentState {
        agent_id: "ann".into(),
        state: "break".into(),
        reason: Some("lunch".into()),
        presence: Some("break".into()),
        at_ms: T0 + 1000,
    });
    w.send(StoreCmd::AgentState {
        agent_id: "ann".into(),
        state: "busy".into(),
        reason: None,
        presence: None,
        at_ms: T0 + 2000,
    });
    store.flush().await.expect("flush");
    let mut changed = agent("ann");
    changed.skills = vec![("support".into(), 9)];
    changed.updated_ms = T0 + 3000;
    store.update_agent(&changed).await.expect("update");
    let got = store.get_agent("ann").await.expect("get").expect("there");
    assert_eq!(got.skills, [("support".to_owned(), 9)]);
    assert_eq!(
        (got.presence.as_str(), got.reason.as_deref()),
        ("break", Some("lunch")),
        "the chosen presence is kept; busy is not a presence"
    );
    assert!(got.no_chat_on_call);
    let states = store
        .agent_states("ann", T0, T0 + 10_000, 10)
        .await
        .expect("states");
    assert_eq!(
        states.iter().map(|s| s.state.as_str()).collect::<Vec<_>>(),
        ["break", "busy"]
    );
    let at = store
        .agent_state_at("ann", T0 + 1500)
        .await
        .expect("state at")
        .expect("one");
    assert_eq!(at.state, "break");
    assert!(store.remove_agent("ann").await.expect("remove"));
    assert!(!store.remove_agent("ann").await.expect("remove again"));
    assert!(store.list_agents().await.expect("list").is_empty());
    store.close().await.expect("close");
}

async fn tasks_give_service_level_answer_and_handle_times(db: TestDb) {
    let store = db.open().await;
    let w = store.writer();
    for (i, id) in ["t1", "t2", "t3", "t4"].iter().enumerate() {
        w.send(StoreCmd::TaskJoined(NewTask {
            id: (*id).into(),
            queue: "support".into(),
            media: "voice".into(),
            session_id: None,
            call_id: None,
            conversation_id: None,
            priority: i as i32,
            joined_ms: T0,
        }));
    }
    // t1 answered in 10 s, handled 60 s; t2 answered in 30 s, handled 120 s; t3 abandoned;
    // t4 a callback.
    w.send(StoreCmd::TaskAnswered {
        id: "t1".into(),
        agent_id: "ann".into(),
        outcome: "answered".into(),
        at_ms: T0 + 10_000,
    });
    w.send(StoreCmd::TaskEnded {
        id: "t1".into(),
        at_ms: T0 + 70_000,
    });
    w.send(StoreCmd::TaskAnswered {
        id: "t2".into(),
        agent_id: "bob".into(),
        outcome: "answered".into(),
        at_ms: T0 + 30_000,
    });
    // A late TaskLeft does not end an answered task (its handle time stays).
    w.send(StoreCmd::TaskLeft {
        id: "t2".into(),
        outcome: "abandoned".into(),
        at_ms: T0 + 40_000,
    });
    w.send(StoreCmd::TaskEnded {
        id: "t2".into(),
        at_ms: T0 + 150_000,
    });
    w.send(StoreCmd::TaskLeft {
        id: "t3".into(),
        outcome: "abandoned".into(),
        at_ms: T0 + 5_000,
    });
    w.send(StoreCmd::TaskLeft {
        id: "t4".into(),
        outcome: "callback".into(),
        at_ms: T0 + 6_000,
    });
    store.flush().await.expect("flush");
    let tasks = store
        .tasks(Some("support"), None, T0, T0 + 1)
        .await
        .expect("tasks");
    assert_eq!(tasks.len(), 4);
    let s = TaskStats::of(&tasks, 20_000);
    assert_eq!(
        (s.contacts, s.answered, s.abandoned, s.callbacks),
        (4, 2, 1, 1)
    );
    assert_eq!(s.answered_in_threshold, 1);
    assert_eq!(s.avg_answer_ms, Some(20_000.0));
    assert_eq!(s.avg_handle_ms, Some(90_000.0));
    assert_eq!(s.abandon_rate_pct, Some(25.0));
    let pct = s.service_level_pct.expect("a service level");
    assert!((pct - 100.0 / 3.0).abs() < 1e-9, "{pct}");
    let ann = store
        .tasks(None, Some("ann"), T0, T0 + 1)
        .await
        .expect("ann's");
    assert_eq!(ann.len(), 1);
    assert_eq!(ann[0].outcome.as_deref(), Some("answered"));
    store.close().await.expect("close");
}

async fn customers_created_ahead_and_patched_give_their_profiles(db: TestDb) {
    let store = db.open().await;
    let phone = Identity {
        kind: IdentityKind::Phone,
        value: "+442079460002".into(),
    };
    let profile = Profile {
        vip: true,
        attributes: BTreeMap::from([("tier".to_owned(), "gold".to_owned())]),
    };
    let id = store
        .create_customer(
            Some("Very Important"),
            std::slice::from_ref(&phone),
            &profile,
        )
        .await
        .expect("create");
    assert!(matches!(
        store
            .create_customer(None, std::slice::from_ref(&phone), &Profile::default())
            .await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(store.customer_profile(id).await.expect("profile"), profile);
    let patch = BTreeMap::from([
        ("tier".to_owned(), String::new()),
        ("language".to_owned(), "es".to_owned()),
    ]);
    assert!(
        store
            .update_customer(id, None, Some(false), Some(&patch))
            .await
            .expect("patch")
    );
    let now = store.customer_profile(id).await.expect("profile");
    assert!(!now.vip);
    assert_eq!(
        now.attributes,
        BTreeMap::from([("language".to_owned(), "es".to_owned())])
    );
    let all = store.customer_profiles().await.expect("profiles");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].0, phone);
    store.close().await.expect("close");
}
