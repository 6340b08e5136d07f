//! The routing engine in virtual time: each strategy, capacity across channels, priority
//! re-sort, escalation keeping the place, overflow, no-answer re-queue, wrap-up, a state change
//! racing an offer, callback keeping the place, maximum wait and length, expected wait, agent
//! state reports, and a line of 10,000.

use super::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn queue(strategy: Strategy) -> QueueSpec {
    QueueSpec::new(strategy, vec![skill("support", 1)])
}

fn skill(name: &str, level: u8) -> Skill {
    (name.to_owned(), level)
}

fn agent(skills: &[Skill], voice: u32, chat: u32, no_chat_on_call: bool) -> AgentSpec {
    AgentSpec {
        skills: skills.to_vec(),
        capacity: vec![(Media::Voice, voice), (Media::Chat, chat)],
        no_chat_on_call,
    }
}

fn available(e: &mut Engine, now: Instant, id: &str) {
    e.handle_presence(now, id, Presence::Available, None);
}

/// An engine with queue `support` and agents `a`, `b`, `c` (support:5, voice 1, chat 3),
/// made available in that order one second apart (so `a` has been idle longest).
fn engine_with(spec: QueueSpec, t0: Instant) -> Engine {
    let mut e = Engine::new();
    e.set_queue("support", spec);
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        let at = t0 + secs(i as u64);
        e.set_agent(at, id, &agent(&[skill("support", 5)], 1, 3, false));
        available(&mut e, at, id);
    }
    drain(&mut e);
    e
}

fn engine(strategy: Strategy, t0: Instant) -> Engine {
    engine_with(queue(strategy), t0)
}

fn drain(e: &mut Engine) -> Vec<Action> {
    std::iter::from_fn(|| e.poll_action()).collect()
}

fn offers(e: &mut Engine) -> Vec<(u64, String)> {
    drain(e)
        .into_iter()
        .filter_map(|a| match a {
            Action::Offer { contact, agent } => Some((contact, agent)),
            _ => None,
        })
        .collect()
}

fn contact(media: Media, priority: i32, skills: Vec<Skill>) -> ContactSpec {
    ContactSpec {
        queue: "support".into(),
        media,
        priority,
        skills,
    }
}

fn call(e: &mut Engine, now: Instant, id: u64, priority: i32) {
    e.handle_contact(now, id, contact(Media::Voice, priority, vec![]));
}

fn chat(e: &mut Engine, now: Instant, id: u64) {
    e.handle_contact(now, id, contact(Media::Chat, 0, vec![]));
}

#[test]
fn longest_idle_offers_to_the_agent_free_the_longest() {
    let t0 = Instant::now();
    let mut e = engine(Strategy::LongestIdle, t0);
    call(&mut e, t0 + secs(10), 1, 0);
    assert_eq!(offers(&mut e), [(1, "a".to_owned())]);
}

#[test]
fn round_robin_takes_turns() {
    let t0 = Instant::now();
    let mut e = engine(Strategy::RoundRobin, t0);
    let mut got = Vec::new();
    for id in 1..=3 {
        let now = t0 + secs(10 + 30 * id);
        call(&mut e, now, id, 0);
        let o = offers(&mut e);
        assert!(e.handle_accept(now, id, &o[0].1));
        e.handle_done(now + secs(1), id);
        e.handle_timeout(now + secs(20)); // wrap-up over
        got.push(o[0].1.clone());
    }
    got.sort();
    assert_eq!(got, ["a", "b", "c"], "each agent once");
}

#[test]
fn least_occupied_prefers_the_agent_with_fewest_tasks() {
    let t0 = Instant::now();
    let mut e = engine(Strategy::LeastOccupied, t0);
    for id in [1, 2] {
        chat(&mut e, t0 + secs(5), id);
        let o = offers(&mut e);
        assert!(e.handle_accept(t0 + secs(5), id, &o[0].1));
    }
    chat(&mut e, t0 + secs(6), 3);
    let o = offers(&mut e);
    assert_eq!(o.len(), 1);
    assert_eq!(
        ["a", "b", "c"]
            .into_iter()
            .filter(|id| e.agents[*id].occupancy() > 0)
            .count(),
        3,
        "the third chat went to the agent without one: {o:?}"
    );
}

#[test]
fn skills_best_match_picks_the_highest_levels_and_never_below_the_level_asked() {
    let t0 = Instant::now();
    let mut e = Engine::new();
    e.set_queue(
        "support",
        QueueSpec::new(Strategy::SkillsBestMatch, Vec::new()),
    );
    for (id, level) in [("junior", 2), ("senior", 9), ("mid", 5)] {
        e.set_agent(t0, id, &agent(&[skill("billing", level)], 1, 0, false));
        available(&mut e, t0, id);
    }
    e.handle_contact(t0, 1, contact(Media::Voice, 0, vec![skill("billing", 3)]));
    assert_eq!(offers(&mut e), [(1, "senior".to_owned())]);
    e.handle_contact(t0, 2, contact(Media::Voice, 0, vec![skill("billing", 6)]));
    assert_eq!(
        offers(&mut e),
        [],
        "senior holds an offer; nobody else has 6"
    );
}

#[test]
fn ring_all_offers_everyone_and_the_first_accept_wins() {
    let t0 = Instant::now();
    let mut e = engine(Strategy::RingAll, t0);
    call(&mut e, t0 + secs(5), 1, 0);
    assert_eq!(offers(&mut e).len(), 3);
    assert!(e.handle_accept(t0 + secs(6), 1, "b"));
    let mut withdrawn: Vec<String> = drain(&mut e)
        .into_iter()
        .filter_map(|a| match a {
            Action::Withdraw { agent, .. } => Some(agent),
            _ => None,
        })
        .collect();
    withdrawn.sort();
    assert_eq!(withdrawn, ["a", "c"]);
    assert!(!e.handle_accept(t0 + secs(6), 1, "a"), "too late: taken");
    assert_eq!(e.task_agent(1), Some("b"));
}

#[test]
fn capacity_counts_per_channel_and_no_chat_on_a_call_when_so_configured() {
    let t0 = Instant::now();
    let mut e = Engine::new();
    e.set_queue("support", QueueSpec::new(Strategy::LongestIdle, Vec::new()));
    e.set_agent(t0, "a", &agent(&[], 1, 2, false));
    e.set_agent(t0, "strict", &agent(&[], 1, 2, true));
    available(&mut e, t0, "a");
    available(&mut e, t0 + secs(1), "strict");
    for id in [1, 2] {
        call(&mut e, t0 + secs(2), id, 0);
        let o = offers(&mut e);
        assert!(e.handle_accept(t0 + secs(2), id, &o[0].1));
    }
    // A third call waits; chats go to `a` (on a call, chat allowed), never to `strict`.
    call(&mut e, t0 + secs(3), 3, 0);
    assert_eq!(offers(&mut e), []);
    for id in [4, 5, 6] {
        chat(&mut e, t0 + secs(3), id);
    }
    assert_eq!(
        offers(&mut e),
        [(4, "a".to_owned()), (5, "a".to_owned())],
        "two chats: a's chat capacity"
    );
    assert_eq!(e.waiting(), 4, "call 3, chats 4-6 (4 and 5 offered)");
    assert!(e.handle_accept(t0 + secs(4), 4, "a"));
    assert!(e.handle_accept(t0 + secs(4), 5, "a"));
    // `strict`'s call ends: with wrap-up over, the waiting call and then a chat are theirs.
    e.handle_done(t0 + secs(10), 2);
    e.handle_timeout(t0 + secs(20));
    assert_eq!(
        offers(&mut e),
        [(3, "strict".to_owned())],
        "ringing with a call: no chat for strict"
    );
    assert!(e.handle_accept(t0 + secs(21), 3, "strict"));
    e.handle_done(t0 + secs(30), 3);
    e.handle_timeout(t0 + secs(40));
    assert_eq!(offers(&mut e), [(6, "strict".to_owned())]);
}

#[test]
fn a_higher_priority_goes_ahead_of_the_line_at_once() {
    let t0 = Instant::now();
    let mut e = Engine::new();
    e.set_queue("support", queue(Strategy::LongestIdle));
    e.set_agent(t0, "a", &agent(&[skill("support", 5)], 1, 0, false));
    call(&mut e, t0, 1, 0);
    call(&mut e, t0 + secs(1), 2, 0);
    call(&mut e, t0 + secs(2), 3, 10); // a VIP, last to come
    e.handle_priority(t0 + secs(3), 1, 5); // and one raised while waiting
    assert_eq!(e.position(3), Some(1));
    assert_eq!(e.position(1), Some(2));
    assert_eq!(e.position(2), Some(3));
    available(&mut e, t0 + secs(4), "a");
    assert_eq!(offers(&mut e), [(3, "a".to_owned())], "the VIP first");
    assert!(e.handle_accept(t0 + secs(5), 3, "a"));
    e.handle_done(t0 + secs(6), 3);
    e.handle_timeout(t0 + secs(16));
    assert_eq!(offers(&mut e), [(1, "a".to_owned())], "then the raised one");
}

#[test]
fn an_offer_not_accepted_goes_back_to_its_place_and_the_agent_to_break() {
    let t0 = Instant::now();
    let mut e = engine(Strategy::LongestIdle, t0);
    call(&mut e, t0 + secs(5), 1, 0);
    call(&mut e, t0 + secs(6), 2, 0);
    assert_eq!(offers(&mut e), [(1, "a".to_owned()), (2, "b".to_owned())]);
    assert_eq!(
        e.poll_timeout(),
        Some(t0 + secs(20)),
        "call 1's offer timeout"
    );
    e.handle_timeout(t0 + secs(20));
    let actions = drain(&mut e);
    assert!(actions.contains(&Action::NoAnswer {
        contact: 1,
        agent: "a".into()
    }));
    assert!(
        actions.contains(&Action::Offer {
            contact: 1,
            agent: "c".into()
        }),
        "call 1 keeps its place: to the next free agent: {actions:?}"
    );
    assert!(actions.contains(&Action::State {
        agent: "a".into(),
        state: AgentState::Break,
        reason: Some("no-answer".into())
    }));
    assert_eq!(
        e.agent_state("a"),
        Some((AgentState::Break, Some("no-answer")))
    );
}

#[test]
fn going_on_break_with_an_offer_withdraws_it_and_a_late_accept_is_refused() {
    let t0 = Instant::now();
    let mut e = engine(Strategy::LongestIdle, t0);
    call(&mut e, t0 + secs(5), 1, 0);
    assert_eq!(offers(&mut e), [(1, "a".to_owned())]);
    e.handle_presence(t0 + secs(6), "a", Presence::Break, Some("lunch".into()));
    let actions = drain(&mut e);
    assert!(actions.contains(&Action::Withdraw {
        contact: 1,
        agent: "a".into()
    }));
    assert!(actions.contains(&Action::Offer {
        contact: 1,
        agent: "b".into()
    }));
    assert!(!e.handle_accept(t0 + secs(6), 1, "a"), "the break won");
    assert!(e.handle_accept(t0 + secs(7), 1, "b"));
    assert_eq!(e.agent_state("a"), Some((AgentState::Break, Some("lunch"))));
}

#[test]
fn wrap_up_keeps_an_agent_out_of_the_line_until_it_ends() {
    let t0 = Instant::now();
    let mut e = Engine::new();
    e.set_queue("support", queue(Strategy::LongestIdle));
    e.set_agent(t0, "a", &agent(&[skill("support", 5)], 1, 0, false));
    available(&mut e, t0, "a");
    call(&mut e, t0, 1, 0);
    let o = offers(&mut e);
    assert!(e.handle_accept(t0, 1, &o[0].1));
    e.handle_done(t0 + secs(60), 1);
    let states: Vec<Action> = drain(&mut e);
    assert!(states.contains(&Action::State {
        agent: "a".into(),
        state: AgentState::WrapUp,
        reason: None
    }));
    call(&mut e, t0 + secs(61), 2, 0);
    assert_eq!(offers(&mut e), [], "in wrap-up");
    assert_eq!(e.poll_timeout(), Some(t0 + secs(70)));
    e.handle_timeout(t0 + secs(70));
    assert_eq!(offers(&mut e), [(2, "a".to_owned())]);
}

#[test]
fn escalation_widens_the_target_and_the_contact_keeps_its_place() {
    let t0 = Instant::now();
    let mut spec = QueueSpec::new(Strategy::LongestIdle, vec![skill("support", 5)]);
    spec.escalations = vec![Escalation {
        after: secs(60),
        widen: Widen::Skills(vec![skill("support", 1)]),
    }];
    let mut e = Engine::new();
    e.set_queue("support", spec);
    e.set_agent(t0, "junior", &agent(&[skill("support", 2)], 1, 0, false));
    available(&mut e, t0, "junior");
    call(&mut e, t0, 1, 0);
    call(&mut e, t0 + secs(30), 2, 0);
    assert_eq!(offers(&mut e), [], "nobody at level 5");
    e.handle_timeout(t0 + secs(60));
    let actions = drain(&mut e);
    assert_eq!(
        actions,
        [
            Action::Escalated {
                contact: 1,
                step: 1
            },
            Action::Offer {
                contact: 1,
                agent: "junior".into()
            },
            Action::State {
                agent: "junior".into(),
                state: AgentState::Busy,
                reason: None
            }
        ]
    );
    assert!(e.is_waiting(2), "call 2 escalates at 90 s, not before");
    assert_eq!(e.position(2), Some(2), "behind call 1, still waiting");
}

#[test]
fn overflow_lets_another_queues_agents_take_the_contact() {
    let t0 = Instant::now();
    let mut spec = QueueSpec::new(Strategy::LongestIdle, vec![skill("support", 1)]);
    spec.escalations = vec![Escalation {
        after: secs(45),
        widen: Widen::Overflow("sales".into()),
    }];
    let mut e = Engine::new();
    e.set_queue("support", spec);
    e.set_queue(
        "sales",
        QueueSpec::new(Strategy::LongestIdle, vec![skill("sales", 1)]),
    );
    e.set_agent(t0, "seller", &agent(&[skill("sales", 3)], 1, 0, false));
    available(&mut e, t0, "seller");
    call(&mut e, t0, 1, 0);
    assert_eq!(offers(&mut e), []);
    e.handle_timeout(t0 + secs(45));
    assert_eq!(offers(&mut e), [(1, "seller".to_owned())]);
}

#[test]
fn maximum_wait_exits_to_the_flow_and_maximum_length_refuses() {
    let t0 = Instant::now();
    let mut spec = queue(Strategy::LongestIdle);
    spec.max_wait = Some(secs(120));
    spec.max_length = Some(2);
    let mut e = Engine::new();
    e.set_queue("support", spec);
    call(&mut e, t0, 1, 0);
    call(&mut e, t0 + secs(1), 2, 0);
    call(&mut e, t0 + secs(2), 3, 0);
    assert_eq!(
        drain(&mut e),
        [Action::Exit {
            contact: 3,
            reason: ExitReason::Full
        }]
    );
    e.handle_timeout(t0 + secs(119));
    assert_eq!(drain(&mut e), []);
    e.handle_timeout(t0 + secs(120));
    assert_eq!(
        drain(&mut e),
        [Action::Exit {
            contact: 1,
            reason: ExitReason::Timeout
        }]
    );
    assert_eq!(e.waiting(), 1);
    e.handle_contact(
        t0,
        9,
        ContactSpec {
            queue: "nowhere".into(),
            media: Media::Voice,
            priority: 0,
            skills: vec![],
        },
    );
    assert_eq!(
        drain(&mut e),
        [Action::Exit {
            contact: 9,
            reason: ExitReason::NoQueue
        }]
    );
}

#[test]
fn a_callback_keeps_its_place_and_has_no_maximum_wait() {
    let t0 = Instant::now();
    let mut spec = queue(Strategy::LongestIdle);
    spec.max_wait = Some(secs(120));
    let mut e = Engine::new();
    e.set_queue("support", spec);
    e.set_agent(t0, "a", &agent(&[skill("support", 5)], 1, 0, false));
    call(&mut e, t0, 1, 0);
    call(&mut e, t0 + secs(1), 2, 0);
    e.handle_callback(t0 + secs(2), 1);
    e.handle_timeout(t0 + secs(200));
    assert_eq!(
        drain(&mut e),
        [Action::Exit {
            contact: 2,
            reason: ExitReason::Timeout
        }]
    );
    assert_eq!(e.position(1), Some(1));
    available(&mut e, t0 + secs(300), "a");
    assert_eq!(offers(&mut e), [(1, "a".to_owned())]);
}

#[test]
fn expected_wait_is_position_times_handle_time_over_staffed_agents() {
    let t0 = Instant::now();
    let mut e = engine(Strategy::LongestIdle, t0);
    // Before any call: the default handle time.
    for id in 1..=3 {
        call(&mut e, t0 + secs(5), id, 0);
        let o = offers(&mut e);
        assert!(e.handle_accept(t0 + secs(5), id, &o[0].1));
    }
    call(&mut e, t0 + secs(6), 4, 0);
    call(&mut e, t0 + secs(6), 5, 0);
    assert_eq!(e.expected_wait(5), Some(DEFAULT_HANDLE_TIME * 2 / 3));
    // Calls of 60 s each: the average moves to 60 s.
    for id in 1..=3 {
        e.handle_done(t0 + secs(65), id);
    }
    drain(&mut e);
    let ewt = e.expected_wait(5).map(|d| d.as_secs());
    assert!(
        ewt.is_some_and(|s| s < 120),
        "60 s calls bring the estimate down: {ewt:?}"
    );
    assert_eq!(e.expected_wait(99), None);
}

#[test]
fn live_figures_count_waiting_and_agents_by_state() {
    let t0 = Instant::now();
    let mut e = engine(Strategy::LongestIdle, t0);
    e.handle_presence(t0 + secs(3), "c", Presence::Break, Some("lunch".into()));
    call(&mut e, t0 + secs(5), 1, 0);
    assert!(e.handle_accept(t0 + secs(5), 1, "a"));
    call(&mut e, t0 + secs(6), 2, 0); // offered to b
    call(&mut e, t0 + secs(7), 3, 0); // waits
    let live = e.live("support");
    assert_eq!(live.waiting, 2);
    assert_eq!(live.oldest, Some(t0 + secs(6)));
    assert_eq!(live.agents, BTreeMap::from([("break", 1), ("busy", 2)]));
}

#[test]
fn a_removed_queue_keeps_serving_its_contacts() {
    let t0 = Instant::now();
    let mut e = Engine::new();
    e.set_queue("support", queue(Strategy::LongestIdle));
    e.set_agent(t0, "a", &agent(&[skill("support", 5)], 1, 0, false));
    call(&mut e, t0, 1, 0);
    e.remove_queue("support");
    available(&mut e, t0 + secs(1), "a");
    assert_eq!(offers(&mut e), [(1, "a".to_owned())]);
    call(&mut e, t0 + secs(2), 2, 0);
    assert_eq!(
        drain(&mut e),
        [Action::Exit {
            contact: 2,
            reason: ExitReason::NoQueue
        }]
    );
}

#[test]
fn ten_thousand_waiting_contacts_are_served_in_order() {
    let t0 = Instant::now();
    let mut e = Engine::new();
    e.set_queue("support", queue(Strategy::LongestIdle));
    e.set_agent(t0, "a", &agent(&[skill("support", 5)], 1, 0, false));
    for id in 0..10_000u64 {
        call(&mut e, t0 + Duration::from_millis(id), id, (id % 3) as i32);
    }
    available(&mut e, t0 + secs(20), "a");
    let mut served = Vec::new();
    for round in 0..5u64 {
        let o = offers(&mut e);
        assert_eq!(o.len(), 1);
        served.push(o[0].0);
        let now = t0 + secs(30 + round * 20);
        assert!(e.handle_accept(now, o[0].0, "a"));
        e.handle_done(now, o[0].0);
        e.handle_timeout(now + secs(10));
    }
    // Priority 2 first (ids 2, 5, 8, …), oldest first.
    assert_eq!(served, [2, 5, 8, 11, 14]);
    assert_eq!(e.waiting(), 9_995);
}

#[test]
fn a_no_answer_break_withdraws_the_agents_other_offers() {
    let t0 = Instant::now();
    let mut e = Engine::new();
    e.set_queue("support", queue(Strategy::LongestIdle));
    e.set_agent(t0, "a", &agent(&[skill("support", 5)], 0, 3, false));
    available(&mut e, t0, "a");
    chat(&mut e, t0, 1);
    chat(&mut e, t0 + secs(5), 2);
    assert_eq!(offers(&mut e), [(1, "a".to_owned()), (2, "a".to_owned())]);
    // Chat 1's offer times out: on break, chat 2's offer goes back too.
    e.handle_timeout(t0 + secs(15));
    let actions = drain(&mut e);
    assert!(actions.contains(&Action::NoAnswer {
        contact: 1,
        agent: "a".into()
    }));
    assert!(
        actions.contains(&Action::Withdraw {
            contact: 2,
            agent: "a".into()
        }),
        "{actions:?}"
    );
    assert!(
        !e.handle_accept(t0 + secs(16), 2, "a"),
        "not theirs on break"
    );
    assert_eq!(e.position(2), Some(2));
}

#[test]
fn a_callback_chosen_while_offered_takes_the_offer_back_without_a_penalty() {
    let t0 = Instant::now();
    let mut e = engine(Strategy::LongestIdle, t0);
    call(&mut e, t0 + secs(5), 1, 0);
    assert_eq!(offers(&mut e), [(1, "a".to_owned())]);
    e.handle_callback(t0 + secs(6), 1);
    let actions = drain(&mut e);
    assert!(actions.contains(&Action::Withdraw {
        contact: 1,
        agent: "a".into()
    }));
    assert_eq!(
        e.agent_state("a").map(|(s, _)| s),
        Some(AgentState::Busy),
        "offered again at once, and not on break: {actions:?}"
    );
    assert!(e.is_offered(1, "a") || e.is_offered(1, "b"));
}

#[test]
fn an_assignment_over_a_task_frees_the_first_agent() {
    let t0 = Instant::now();
    let mut e = engine(Strategy::LongestIdle, t0);
    call(&mut e, t0 + secs(5), 1, 0);
    assert!(e.handle_accept(t0 + secs(6), 1, "a"));
    assert!(e.handle_assign(t0 + secs(7), 1, "b", "support", Media::Voice));
    assert_eq!(e.task_agent(1), Some("b"));
    assert_eq!(
        e.agent_state("a").map(|(s, _)| s),
        Some(AgentState::Available)
    );
}
