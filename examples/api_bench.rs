//! Load client for `scripts/bench switchboard api`: call-control API latency under live calls,
//! and event fan-out to many WebSocket subscribers.
//!
//! 1. Opens `--subscribers` WebSockets to `/v1/events` (every type, from now on) and prints
//!    `ready` on stderr once all are open (the bench script starts the SIPp calls then).
//! 2. Polls `GET /v1/calls` until `--calls` calls are answered/bridged (or `--wait-secs` pass).
//! 3. For `--seconds`, at `--rate` actions/s in total (open loop: each action is sent at its
//!    scheduled time whatever the earlier ones are doing), cycles over a sample of `--sample`
//!    calls running `GET /v1/calls/{id}`, `POST /v1/calls/{id}/play` (tone `beep`) and
//!    `POST /v1/calls/{id}/dtmf` in turn; once a second it also lists the calls
//!    (`GET /v1/calls`). Each request's latency is recorded.
//! 4. Takes the highest event `seq` any subscriber has seen as the cut-off, waits until every
//!    subscriber has it (at most 10 s), and reports per subscriber the events at or before it.
//!
//! Prints `key=value` lines on stdout: per action kind and overall `count`, `errors`,
//! `p50_ms`, `p99_ms`, `max_ms`; `events_expected` (cut-off minus the seq before the first
//! event), `events_min`/`events_max` per subscriber, `events_gaps` (subscribers whose seqs were
//! not consecutive), and the delivery latency `event_p50_ms`/`event_p99_ms`/`event_max_ms`
//! (receive time minus the event's `time`, same host clock; `time` has millisecond resolution).
//!
//! `cargo run --release --example api_bench -- --url http://127.0.0.1:8080 --key sb_…`
#![allow(clippy::disallowed_methods)] // a test measures real time, not the server's clock

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Command line (the bench script passes every flag).
#[derive(Debug, Clone, clap::Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, env = "SWITCHBOARD_API_KEY", default_value = "")]
    key: String,
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    #[arg(long, default_value_t = 200)]
    calls: usize,
    #[arg(long, default_value_t = 50)]
    sample: usize,
    #[arg(long, default_value_t = 100)]
    rate: u32,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 60)]
    wait_secs: u64,
}

/// What one subscriber saw.
#[derive(Debug, Default)]
struct Seen {
    /// (seq, delivery latency ms)
    events: Vec<(i64, f64)>,
    closed: Option<String>,
}

async fn subscribe(args: &Args, seen: Arc<Mutex<Seen>>, top: Arc<AtomicI64>) -> anyhow::Result<()> {
    let ws_url = format!("{}/v1/events", args.url.replacen("http", "ws", 1));
    let mut req = ws_url.into_client_request()?;
    req.headers_mut()
        .insert("Authorization", format!("Bearer {}", args.key).parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    tokio::spawn(async move {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Text(t)) => {
                    let now = jiff::Timestamp::now();
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) else {
                        continue;
                    };
                    let seq = v["seq"].as_i64().unwrap_or(-1);
                    let lat = v["time"]
                        .as_str()
                        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
                        .map(|t| (now.as_microsecond() - t.as_microsecond()) as f64 / 1000.0)
                        .unwrap_or(f64::NAN);
                    top.fetch_max(seq, Ordering::Relaxed);
                    seen.lock().await.events.push((seq, lat));
                }
                Ok(Message::Close(f)) => {
                    seen.lock().await.closed = Some(format!("{f:?}"));
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    seen.lock().await.closed = Some(e.to_string());
                    break;
                }
            }
        }
    });
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Get,
    Play,
    Dtmf,
    List,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Get => "get",
            Kind::Play => "play",
            Kind::Dtmf => "dtmf",
            Kind::List => "list",
        }
    }
}

/// One request: (kind, latency ms, ok).
type Sample = (Kind, f64, bool);

async fn action(
    http: &reqwest::Client,
    args: &Args,
    kind: Kind,
    call: &str,
) -> (bool, Option<String>) {
    let base = &args.url;
    let auth = format!("Bearer {}", args.key);
    let req = match kind {
        Kind::Get => http.get(format!("{base}/v1/calls/{call}")),
        Kind::List => http.get(format!("{base}/v1/calls")),
        Kind::Play => http
            .post(format!("{base}/v1/calls/{call}/play"))
            .json(&serde_json::json!({"tone": "beep"})),
        Kind::Dtmf => http
            .post(format!("{base}/v1/calls/{call}/dtmf"))
            .json(&serde_json::json!({"digits": "1"})),
    };
    match req.header("Authorization", auth).send().await {
        Ok(r) if r.status().is_success() => {
            // read the body: its latency is part of the answer
            let ok = r.bytes().await.is_ok();
            (ok, None)
        }
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            (false, Some(format!("{status} {body}")))
        }
        Err(e) => (false, Some(e.to_string())),
    }
}

async fn live_calls(http: &reqwest::Client, args: &Args) -> anyhow::Result<Vec<String>> {
    let v: serde_json::Value = http
        .get(format!("{}/v1/calls", args.url))
        .header("Authorization", format!("Bearer {}", args.key))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(v["calls"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|c| matches!(c["state"].as_str(), Some("answered" | "bridged")))
                .filter_map(|c| c["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(prefix: &str, lat: &mut [f64]) {
    lat.sort_by(f64::total_cmp);
    println!("{prefix}_p50_ms={:.2}", pct(lat, 50.0));
    println!("{prefix}_p99_ms={:.2}", pct(lat, 99.0));
    println!(
        "{prefix}_max_ms={:.2}",
        lat.last().copied().unwrap_or(f64::NAN)
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(10))
        .build()?;

    // 1. subscribers
    let top = Arc::new(AtomicI64::new(-1));
    let mut seen = Vec::with_capacity(args.subscribers);
    for _ in 0..args.subscribers {
        let s = Arc::new(Mutex::new(Seen::default()));
        subscribe(&args, s.clone(), top.clone()).await?;
        seen.push(s);
    }
    eprintln!("ready: {} subscribers", args.subscribers);

    // 2. calls up
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    let mut calls = live_calls(&http, &args).await?;
    while calls.len() < args.calls && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        calls = live_calls(&http, &args).await?;
    }
    println!("calls_up={}", calls.len());
    anyhow::ensure!(!calls.is_empty(), "no answered calls");
    calls.truncate(args.sample);
    let calls = Arc::new(calls);
    eprintln!(
        "actions: {} calls sampled, {}/s for {} s",
        calls.len(),
        args.rate,
        args.seconds
    );

    // 3. actions, open loop
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let in_flight = Arc::new(AtomicU64::new(0));
    let max_in_flight = Arc::new(AtomicU64::new(0));
    let total = args.rate as u64 * args.seconds;
    let period = Duration::from_secs_f64(1.0 / args.rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..total {
        tokio::time::sleep_until(start + period * i as u32).await;
        let kind = if i % args.rate as u64 == 0 {
            Kind::List
        } else {
            [Kind::Get, Kind::Play, Kind::Dtmf][(i % 3) as usize]
        };
        let call = calls[(i as usize / 3) % calls.len()].clone();
        let (http, args, samples, first_error) = (
            http.clone(),
            args.clone(),
            samples.clone(),
            first_error.clone(),
        );
        let (in_flight, max_in_flight) = (in_flight.clone(), max_in_flight.clone());
        tasks.push(tokio::spawn(async move {
            let n = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            max_in_flight.fetch_max(n, Ordering::Relaxed);
            let t0 = Instant::now();
            let (ok, err) = action(&http, &args, kind, &call).await;
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            samples.lock().await.push((kind, ms, ok));
            if let Some(e) = err {
                first_error
                    .lock()
                    .await
                    .get_or_insert(format!("{}: {e}", kind.name()));
            }
        }));
    }
    let sent_secs = start.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }

    // 4. fan-out cut-off
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cutoff = top.load(Ordering::Relaxed);
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let mut behind = 0;
        for s in &seen {
            if s.lock().await.events.last().is_none_or(|e| e.0 < cutoff) {
                behind += 1;
            }
        }
        if behind == 0 || Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // report
    let samples = samples.lock().await;
    println!("actions_sent={}", samples.len());
    println!("actions_offered_per_s={}", args.rate);
    println!(
        "actions_achieved_per_s={:.1}",
        samples.len() as f64 / sent_secs
    );
    println!(
        "actions_max_in_flight={}",
        max_in_flight.load(Ordering::Relaxed)
    );
    println!("sample_calls={}", calls.len());
    for kind in [Kind::Get, Kind::Play, Kind::Dtmf, Kind::List] {
        let mut lat: Vec<f64> = samples
            .iter()
            .filter(|s| s.0 == kind)
            .map(|s| s.1)
            .collect();
        let errors = samples.iter().filter(|s| s.0 == kind && !s.2).count();
        println!("{}_count={}", kind.name(), lat.len());
        println!("{}_errors={errors}", kind.name());
        report(kind.name(), &mut lat);
    }
    let mut all: Vec<f64> = samples.iter().map(|s| s.1).collect();
    println!("all_errors={}", samples.iter().filter(|s| !s.2).count());
    report("all", &mut all);
    if let Some(e) = first_error.lock().await.as_ref() {
        println!("first_error={}", e.replace(['\n', ' '], "_"));
    }

    let mut first = i64::MAX;
    for s in &seen {
        if let Some(e) = s.lock().await.events.first() {
            first = first.min(e.0);
        }
    }
    let mut counts = Vec::new();
    let mut gaps = 0;
    let mut closed = 0;
    let mut lat = Vec::new();
    for s in &seen {
        let s = s.lock().await;
        let upto: Vec<&(i64, f64)> = s.events.iter().filter(|e| e.0 <= cutoff).collect();
        if upto.windows(2).any(|w| w[1].0 != w[0].0 + 1) {
            gaps += 1;
        }
        if s.closed.is_some() {
            closed += 1;
        }
        counts.push(upto.len());
        lat.extend(upto.iter().map(|e| e.1).filter(|l| l.is_finite()));
    }
    println!("subscribers={}", seen.len());
    println!(
        "events_expected={}",
        if first == i64::MAX {
            0
        } else {
            cutoff - first + 1
        }
    );
    println!("events_min={}", counts.iter().min().copied().unwrap_or(0));
    println!("events_max={}", counts.iter().max().copied().unwrap_or(0));
    println!("events_gaps={gaps}");
    println!("subscribers_closed={closed}");
    println!("events_delivered={}", lat.len());
    report("event", &mut lat);
    Ok(())
}
