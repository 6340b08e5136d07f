//! The routing engine in virtual time: each strategy, capacity across channels, priority,
//! no-answer re-queue, wrap-up, and a long line.

use super::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn queue(strategy: Strategy) -> QueueSpec {
    QueueSpec {
        strategy,
        offer_timeout: secs(15),
        wrap_up: secs(10),
    }
}

fn skill(name: &str, level: u8) -> Skill {
    (name.to_owned(), level)
}

/// An engine with queue `support` and agents `a`, `b`, `c` (support:5, voice 1, chat 3),
/// made available in that order one second apart (so `a` has been idle longest).
fn engine(strategy: Strategy, t0: Instant) -> Engine {
    let mut e = Engine::new();
    e.set_queue("support", queue(strategy));
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        let at = t0 + secs(i as u64);
        e.set_agent(
            at,
            id,
            &[skill("support", 5)],
            &[(Media::Voice, 1), (Media::Chat, 3)],
            false,
        );
        e.handle_presence(at, id, Presence::Available);
    }
    e
}

fn offers(e: &mut Engine) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    while let Some(a) = e.poll_action() {
        if let Action::Offer { contact, agent } = a {
            out.push((contact, agent));
        }
    }
    out
}

fn call(e: &mut Engine, now: Instant, id: u64, priority: i32) {
    e.handle_contact(
        now,
        id,
        "support",
        Media::Voice,
        priority,
        vec![skill("support", 1)],
    );
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
        call(&mut e, t0 + secs(10), id, 0);
        let o = offers(&mut e);
        assert!(e.handle_accept(t0 + secs(11), id, &o[0].1));
        e.handle_done(t0 + secs(12), &o[0].1, Media::Voice, "support");
        e.handle_timeout(t0 + secs(30)); // wrap-up over
        got.push(o[0].1.clone());
    }
    got.sort();
    assert_eq!(got, ["a", "b", "c"], "each agent once");
}

#[test]
fn least_occupied_prefers_the_agent_with_fewest_tasks() {
    let t0 = Instant::now();
    let mut e = engine(Strategy::LeastOccupied, t0);
    // Two chats go to two agents (longest idle among the least occupied).
    for id in [1, 2] {
        e.handle_contact(t0, id, "support", Media::Chat, 0, vec![]);
        let o = offers(&mut e);
        assert!(e.handle_accept(t0, id, &o[0].1));
    }
    e.handle_contact(t0 + secs(5), 3, "support", Media::Chat, 0, vec![]);
    let o = offers(&mut e);
    assert_eq!(o.len(), 1);
    let busy: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .filter(|id| e.agents[*id].occupancy() > 0)
        .collect();
    assert_eq!(
        busy.len(),
        3,
        "the third chat went to the free agent: {o:?}"
    );
}

#[test]
fn skills_best_match_picks_the_highest_levels() {
    let t0 = Instant::now();
    let mut e = Engine::new();
    e.set_queue("support", queue(Strategy::SkillsBestMatch));
    for (id, level) in [("junior", 2), ("senior", 9), ("mid", 5)] {
        e.set_agent(
            t0,
            id,
            &[skill("billing", level)],
            &[(Media::Voice, 1)],
            false,
        );
        e.handle_presence(t0, id, Presence::Available);
    }
    e.handle_contact(t0, 1, "support", Media::Voice, 0, vec![skill("billing", 3)]);
    assert_eq!(offers(&mut e), [(1, "senior".to_owned())]);
    // Below the level asked: never offered.
    e.handle_contact(t0, 2, "support", Media::Voice, 0, vec![skill("billing", 6)]);
    assert_eq!(
        offers(&mut e),
        [],
        "senior holds an offer; nobody else has billing 6"
    );
}

#[test]
fn ring_all_offers_everyone_and_the_first_accept_wins() {
    let t0 = Instant::now();
    let mut e = engine(Strategy::RingAll, t0);
    call(&mut e, t0 + secs(5), 1, 0);
    assert_eq!(offers(&mut e).len(), 3);
    assert!(e.handle_accept(t0 + secs(6), 1, "b"));
    let mut withdrawn = Vec::new();
    while let Some(a) = e.poll_action() {
        if let Action::Withdraw { agent, .. } = a {
            withdrawn.push(agent);
        }
    }
    withdrawn.sort();
    assert_eq!(withdrawn, ["a", "c"]);
    assert!(!e.handle_accept(t0 + secs(6), 1, "a"), "too late: taken");
}

#[test]
fn capacity_counts_per_channel_and_chats_may_wait_for_calls_to_end() {
    let t0 = Instant::now();
    let mut e = Engine::new();
    e.set_queue("support", queue(Strategy::LongestIdle));
    e.set_agent(t0, "a", &[], &[(Media::Voice, 1), (Media::Chat, 2)], false);
    e.set_agent(
        t0,
        "strict",
        &[],
        &[(Media::Voice, 1), (Media::Chat, 2)],
        true,
    );
    e.handle_presence(t0, "a", Presence::Available);
    e.handle_presence(t0 + secs(1), "strict", Presence::Available);
    // Both on a call.
    for id in [1, 2] {
        e.handle_contact(t0 + secs(2), id, "support", Media::Voice, 0, vec![]);
        let o = offers(&mut e);
        assert!(e.handle_accept(t0 + secs(2), id, &o[0].1));
    }
    // A third call waits; chats go to `a` (on a call, chat allowed), never to `strict`.
    e.handle_contact(t0 + secs(3), 3, "support", Media::Voice, 0, vec![]);
    assert_eq!(offers(&mut e), []);
    for id in [4, 5, 6] {
        e.handle_contact(t0 + secs(3), id, "support", Media::Chat, 0, vec![]);
    }
    let o = offers(&mut e);
    assert_eq!(
        o,
        [(4, "a".to_owned()), (5, "a".to_owned())],
        "two chats: a's capacity"
    );
    assert_eq!(e.waiting(), 4, "call 3, chats 4-6 (4 and 5 offered)");
}

#[test]
fn a_higher_priority_goes_ahead_of_the_line_at_once() {
    let t0 = Instant::now();
    let mut e = Engine::new();
    e.set_queue("support", queue(Strategy::LongestIdle));
    e.set_agent(t0, "a", &[skill("support", 5)], &[(Media::Voice, 1)], false);
    call(&mut e, t0, 1, 0);
    call(&mut e, t0 + secs(1), 2, 0);
    call(&mut e, t0 + secs(2), 3, 10); // a VIP, last to come
    e.handle_priority(t0 + secs(3), 1, 5); // and one raised while waiting
    e.handle_presence(t0 + secs(4), "a", Presence::Available);
    assert_eq!(offers(&mut e), [(3, "a".to_owned())], "the VIP first");
    assert!(e.handle_accept(t0 + secs(5), 3, "a"));
    e.handle_done(t0 + secs(6), "a", Media::Voice, "support");
    e.handle_timeout(t0 + secs(16));
    assert_eq!(offers(&mut e), [(1, "a".to_owned())], "then the raised one");
}

#[test]
fn an_offer_not_accepted_goes_back_to_the_front_and_the_agent_to_break() {
    let t0 = Instant::now();
    let mut e = engine(Strategy::LongestIdle, t0);
    call(&mut e, t0 + secs(5), 1, 0);
    call(&mut e, t0 + secs(6), 2, 0);
    let first = offers(&mut e);
    assert_eq!(first, [(1, "a".to_owned()), (2, "b".to_owned())]);
    assert_eq!(
        e.poll_timeout(),
        Some(t0 + secs(20)),
        "call 1's offer timeout"
    );
    e.handle_timeout(t0 + secs(20));
    let mut no_answer = Vec::new();
    let mut next = Vec::new();
    while let Some(a) = e.poll_action() {
        match a {
            Action::NoAnswer { contact, agent } => no_answer.push((contact, agent)),
            Action::Offer { contact, agent } => next.push((contact, agent)),
            Action::Withdraw { .. } => {}
        }
    }
    assert_eq!(no_answer, [(1, "a".to_owned())]);
    assert_eq!(
        next,
        [(1, "c".to_owned())],
        "call 1 keeps its place: to the next free agent"
    );
    assert_eq!(e.agents["a"].presence, Presence::Break);
}

#[test]
fn wrap_up_keeps_an_agent_out_of_the_line_until_it_ends() {
    let t0 = Instant::now();
    let mut e = Engine::new();
    e.set_queue("support", queue(Strategy::LongestIdle));
    e.set_agent(t0, "a", &[skill("support", 5)], &[(Media::Voice, 1)], false);
    e.handle_presence(t0, "a", Presence::Available);
    call(&mut e, t0, 1, 0);
    let o = offers(&mut e);
    assert!(e.handle_accept(t0, 1, &o[0].1));
    e.handle_done(t0 + secs(60), "a", Media::Voice, "support");
    call(&mut e, t0 + secs(61), 2, 0);
    assert_eq!(offers(&mut e), [], "in wrap-up");
    assert_eq!(e.poll_timeout(), Some(t0 + secs(70)));
    e.handle_timeout(t0 + secs(70));
    assert_eq!(offers(&mut e), [(2, "a".to_owned())]);
}

#[test]
fn ten_thousand_waiting_contacts_are_served_in_order() {
    let t0 = Instant::now();
    let mut e = Engine::new();
    e.set_queue("support", queue(Strategy::LongestIdle));
    e.set_agent(t0, "a", &[skill("support", 5)], &[(Media::Voice, 1)], false);
    for id in 0..10_000u64 {
        call(&mut e, t0 + Duration::from_millis(id), id, (id % 3) as i32);
    }
    e.handle_presence(t0 + secs(20), "a", Presence::Available);
    let mut served = Vec::new();
    for round in 0..5u64 {
        let o = offers(&mut e);
        assert_eq!(o.len(), 1);
        served.push(o[0].0);
        let now = t0 + secs(30 + round * 20);
        assert!(e.handle_accept(now, o[0].0, "a"));
        e.handle_done(now, "a", Media::Voice, "support");
        e.handle_timeout(now + secs(10));
    }
    // Priority 2 first (ids 2, 5, 8, …), oldest first.
    assert_eq!(served, [2, 5, 8, 11, 14]);
    assert_eq!(e.waiting(), 9_995);
}
