//! Routing decisions per second of the ACD engine (issue 13's figure): 10,000 waiting
//! contacts, 1,000 agents with skills and levels; agents free up one after another, each
//! takes the best contact they can, accepts it, finishes it, and a new contact joins (so the
//! line stays at 10,000). A decision is one contact looked at for an agent (matched or not).
//! Also the time the engine takes from an agent becoming free to its offer (p50/p99).
//!
//! `cargo run --release --example acd_bench`
#![allow(clippy::disallowed_methods)] // a benchmark measures real time

use std::time::{Duration, Instant};

use switchboard::acd::engine::{
    Action, AgentSpec, ContactSpec, Engine, Media, Presence, QueueSpec, Strategy,
};

const SKILLS: [&str; 8] = [
    "support", "sales", "billing", "english", "spanish", "french", "german", "tech",
];

fn main() {
    let waiting = 10_000u64;
    let agents = 1_000usize;
    let rounds = 200_000u64;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let t0 = Instant::now();
    let mut e = Engine::new();
    let mut spec = QueueSpec::new(Strategy::LongestIdle, Vec::new());
    spec.wrap_up = Duration::ZERO;
    e.set_queue("q", spec);
    for a in 0..agents {
        let mut skills = Vec::new();
        for s in SKILLS {
            if next() % 2 == 0 {
                skills.push((s.to_owned(), (next() % 10 + 1) as u8));
            }
        }
        let spec = AgentSpec {
            skills,
            capacity: vec![(Media::Voice, 1), (Media::Chat, 0)],
            no_chat_on_call: false,
        };
        e.set_agent(t0, &format!("a{a}"), &spec);
    }
    let contact = |n: u64| ContactSpec {
        queue: "q".into(),
        media: Media::Voice,
        priority: (n % 3) as i32,
        skills: vec![(SKILLS[(n % 8) as usize].to_owned(), (n % 5 + 1) as u8)],
    };
    for c in 0..waiting {
        e.handle_contact(t0, c, contact(c));
    }
    while e.poll_action().is_some() {}
    let before = e.decisions();
    let mut latencies = Vec::with_capacity(rounds as usize);
    let mut next_id = waiting;
    let started = Instant::now();
    let mut offered = 0u64;
    for r in 0..rounds {
        let now = t0 + Duration::from_millis(r);
        let agent = format!("a{}", r as usize % agents);
        let t = Instant::now();
        e.handle_presence(now, &agent, Presence::Available, None);
        latencies.push(t.elapsed());
        let mut got = None;
        while let Some(a) = e.poll_action() {
            if let Action::Offer { contact, agent } = a {
                got = Some((contact, agent));
            }
        }
        if let Some((c, a)) = got {
            offered += 1;
            e.handle_accept(now, c, &a);
            e.handle_done(now, c);
            e.handle_presence(now, &a, Presence::Offline, None);
            e.handle_contact(now, next_id, contact(next_id));
            next_id += 1;
        } else {
            e.handle_presence(now, &agent, Presence::Offline, None);
        }
        while e.poll_action().is_some() {}
    }
    let elapsed = started.elapsed();
    let decisions = e.decisions() - before;
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "waiting {} agents {} rounds {} offered {} decisions {} in {:.2} s: {:.0} decisions/s; \
         agent free -> offer p50 {:?} p99 {:?} max {:?}",
        e.waiting(),
        agents,
        rounds,
        offered,
        decisions,
        elapsed.as_secs_f64(),
        decisions as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        latencies[latencies.len() - 1]
    );
}
