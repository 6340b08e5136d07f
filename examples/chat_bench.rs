//! Load client for `scripts/bench switchboard chat`: web chat WebSockets held, and messages
//! end to end.
//!
//! 1. Opens `--idle` visitor WebSockets (`POST /chat/visitor`, then `/chat/ws`, each waits for
//!    `hello`), `--connect-parallel` at a time, and keeps them open; prints `idle_open=N` and
//!    `ready-idle` on stderr (the bench script reads the server's memory then), then waits for
//!    a line on stdin before going on (the script's cue that it has measured).
//! 2. Opens one `/v1/events?type=chat.message` WebSocket with the API key (the agent's side)
//!    and `--senders` more visitor sockets; for `--seconds` sends `--rate` messages/s in total
//!    (open loop, spread over the senders), each text carrying its send time; the subscriber
//!    records the latency from send to receipt of the `chat.message` event.
//!
//! Prints `key=value` lines: `idle_open`, `idle_failed`, `sent`, `acked`, `received`,
//! `errors`, `msg_per_s` (received over the send window), `p50_ms`, `p99_ms`, `max_ms`.
//!
//! `cargo run --release --example chat_bench -- --url http://127.0.0.1:8080 --key sb_…`
#![allow(clippy::disallowed_methods)] // a benchmark measures real time

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Command line (the bench script passes every flag).
#[derive(Debug, Clone, clap::Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, env = "SWITCHBOARD_API_KEY", default_value = "")]
    key: String,
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    #[arg(long, default_value_t = 64)]
    connect_parallel: usize,
    #[arg(long, default_value_t = 100)]
    senders: usize,
    #[arg(long, default_value_t = 2000)]
    rate: u32,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A visitor: a token, then its WebSocket after `hello`.
async fn visitor(http: &reqwest::Client, url: &str) -> anyhow::Result<Ws> {
    let r: serde_json::Value = http
        .post(format!("{url}/chat/visitor"))
        .json(&serde_json::json!({}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = r["token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no token"))?;
    let ws_url = format!("{}/chat/ws?token={token}", url.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.into_client_request()?).await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains("\"hello\"") => return Ok(ws),
            Ok(Some(Ok(_))) => continue,
            other => anyhow::bail!("no hello: {other:?}"),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connect_parallel)
        .build()?;

    // 1. Idle sockets.
    let idle: Arc<Mutex<Vec<Ws>>> = Arc::new(Mutex::new(Vec::with_capacity(args.idle)));
    let failed = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let mut openers = Vec::new();
    for _ in 0..args.connect_parallel.max(1) {
        let (http, url, idle, failed, next) = (
            http.clone(),
            args.url.clone(),
            idle.clone(),
            failed.clone(),
            next.clone(),
        );
        let n = args.idle as u64;
        openers.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                match visitor(&http, &url).await {
                    Ok(ws) => idle.lock().await.push(ws),
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("idle visitor failed: {e}");
                        }
                    }
                }
            }
        }));
    }
    for o in openers {
        o.await?;
    }
    let open = idle.lock().await.len();
    println!("idle_open={open}");
    println!("idle_failed={}", failed.load(Ordering::Relaxed));
    eprintln!("ready-idle");
    let mut line = String::new();
    let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await;

    // 2. Messages end to end: the agent's side subscribes first.
    let mut req = format!(
        "{}/v1/events?type=chat.message",
        args.url.replacen("http", "ws", 1)
    )
    .into_client_request()?;
    req.headers_mut()
        .insert("Authorization", format!("Bearer {}", args.key).parse()?);
    let (mut events, _) = tokio_tungstenite::connect_async(req).await?;
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    let received = Arc::new(AtomicU64::new(0));
    let sub = {
        let (latencies, received) = (latencies.clone(), received.clone());
        tokio::spawn(async move {
            while let Some(Ok(m)) = events.next().await {
                let Message::Text(t) = m else { continue };
                let Ok(e) = serde_json::from_str::<serde_json::Value>(t.as_str()) else {
                    continue;
                };
                let text = e["data"]["text"].as_str().unwrap_or_default();
                if let Some(sent) = text
                    .strip_prefix("bench ")
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    latencies.lock().await.push(now_us().saturating_sub(sent));
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let mut senders = Vec::new();
    for _ in 0..args.senders {
        senders.push(visitor(&http, &args.url).await?);
    }
    let per_sender = (f64::from(args.rate) / args.senders.max(1) as f64).max(0.001);
    let interval = Duration::from_secs_f64(1.0 / per_sender);
    let sent = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let stop_at = start + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for (i, ws) in senders.into_iter().enumerate() {
        let (sent, acked, errors) = (sent.clone(), acked.clone(), errors.clone());
        let offset = interval.mul_f64(i as f64 / args.senders.max(1) as f64);
        tasks.push(tokio::spawn(async move {
            let (mut tx, mut rx) = ws.split();
            let reader = {
                let (acked, errors) = (acked.clone(), errors.clone());
                tokio::spawn(async move {
                    while let Some(Ok(m)) = rx.next().await {
                        if let Message::Text(t) = m {
                            if t.as_str().contains("\"ack\"") {
                                acked.fetch_add(1, Ordering::Relaxed);
                            } else if t.as_str().contains("\"error\"") {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            };
            let mut at = tokio::time::Instant::now() + offset;
            let mut n = 0u64;
            while Instant::now() < stop_at {
                tokio::time::sleep_until(at).await;
                at += interval;
                n += 1;
                let frame = serde_json::json!({
                    "type": "message",
                    "client_id": format!("{i}-{n}"),
                    "text": format!("bench {}", now_us()),
                });
                if tx
                    .send(Message::Text(frame.to_string().into()))
                    .await
                    .is_err()
                {
                    errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            // Let the last acks come in.
            tokio::time::sleep(Duration::from_secs(3)).await;
            reader.abort();
        }));
    }
    for t in tasks {
        t.await?;
    }
    let window = start.elapsed().as_secs_f64() - 3.0;
    sub.abort();
    let mut l = latencies.lock().await.clone();
    l.sort_unstable();
    let pct = |p: f64| -> f64 {
        if l.is_empty() {
            return 0.0;
        }
        let i = ((l.len() as f64 - 1.0) * p).round() as usize;
        l[i] as f64 / 1000.0
    };
    println!("sent={}", sent.load(Ordering::Relaxed));
    println!("acked={}", acked.load(Ordering::Relaxed));
    println!("received={}", received.load(Ordering::Relaxed));
    println!("errors={}", errors.load(Ordering::Relaxed));
    println!(
        "msg_per_s={:.0}",
        received.load(Ordering::Relaxed) as f64 / window.max(0.001)
    );
    println!("p50_ms={:.1}", pct(0.50));
    println!("p99_ms={:.1}", pct(0.99));
    println!("max_ms={:.1}", pct(1.0));
    drop(idle);
    Ok(())
}
