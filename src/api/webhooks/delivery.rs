//! Webhook delivery (DRIVER): one task per subscription reads the event log after its cursor
//! and POSTs one matching event at a time, in seq order, signed with HMAC-SHA256. A 2xx moves
//! the cursor (persisted); anything else retries the same event with exponential backoff and
//! jitter. At-least-once, in order, resumed after a restart from the cursor in the database.
//!
//! Request: `Content-Type: application/json`, `Switchboard-Event-Id: <seq>` (the idempotency
//! key), `Switchboard-Signature: t=<unix secs>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::events::Event;
use crate::store::{EventFilter, Store, WebhookId, WebhookRecord};

/// Timeout of one delivery attempt, reply included.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);
/// Longest error text kept in the delivery state.
const MAX_ERROR_LEN: usize = 500;

/// How deliveries are retried.
#[derive(Debug, Clone, Copy)]
pub struct DeliverySettings {
    /// The first retry's delay; it doubles per attempt up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub timeout: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            base_delay: Duration::from_secs(1),
            max_delay: MAX_RETRY_DELAY,
            timeout: DELIVERY_TIMEOUT,
        }
    }
}

/// Starts and stops the delivery tasks. Created at server start; cheap to clone (handlers
/// reach it as an axum `Extension`).
#[derive(Clone)]
pub struct WebhookDispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    settings: DeliverySettings,
    stop: CancellationToken,
    tasks: Mutex<HashMap<WebhookId, CancellationToken>>,
    tracker: TaskTracker,
}

impl WebhookDispatcher {
    pub fn new(store: Store, settings: DeliverySettings) -> WebhookDispatcher {
        WebhookDispatcher {
            inner: Arc::new(Inner {
                store,
                settings,
                stop: CancellationToken::new(),
                tasks: Mutex::new(HashMap::new()),
                tracker: TaskTracker::new(),
            }),
        }
    }

    /// Starts a task for every stored subscription; returns how many.
    pub async fn start(&self) -> Result<usize, crate::store::StoreError> {
        let hooks = self.inner.store.list_webhooks().await?;
        let n = hooks.len();
        for hook in hooks {
            self.spawn(hook);
        }
        if n > 0 {
            tracing::info!(webhooks = n, "webhook deliveries started");
        }
        Ok(n)
    }

    /// Starts delivering to `hook` (a no-op if it already runs or the dispatcher stopped).
    pub fn spawn(&self, hook: WebhookRecord) {
        if self.inner.stop.is_cancelled() {
            return;
        }
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if tasks.contains_key(&hook.id) {
            return;
        }
        let stop = self.inner.stop.child_token();
        tasks.insert(hook.id, stop.clone());
        let task = Delivery {
            store: self.inner.store.clone(),
            settings: self.inner.settings,
            filter: EventFilter {
                types: hook.types.clone(),
                session_id: None,
            },
            hook,
            stop,
        };
        self.inner.tracker.spawn(task.run());
    }

    /// Stops delivering to `id` (its subscription was deleted).
    pub fn cancel(&self, id: WebhookId) {
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(stop) = tasks.remove(&id) {
            stop.cancel();
        }
    }

    /// Cancelled when the server stops (event streams close on it too).
    pub fn stop_token(&self) -> CancellationToken {
        self.inner.stop.clone()
    }

    /// Stops every task and waits for them (an attempt in flight is abandoned: it is retried
    /// after the restart, so the receiver may see it twice).
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}

/// One subscription's delivery loop.
struct Delivery {
    store: Store,
    settings: DeliverySettings,
    filter: EventFilter,
    hook: WebhookRecord,
    stop: CancellationToken,
}

/// The outcome of one attempt.
pub enum Attempt {
    Delivered(u16),
    Failed { status: Option<u16>, error: String },
}

impl Delivery {
    async fn run(self) {
        let id = self.hook.id;
        tokio::select! {
            _ = self.stop.cancelled() => {}
            _ = self.deliver() => {}
        }
        tracing::debug!(webhook = %id, "webhook delivery stopped");
    }

    async fn deliver(&self) {
        let id = self.hook.id;
        // Subscribe first: an event committed after the log is read is then still seen.
        let mut rx = self.store.subscribe_events();
        let mut cursor = self.hook.last_delivered_seq;
        let mut attempts = self.hook.attempts;
        if let Some(at) = self.hook.next_attempt_ms {
            let wait = at - crate::clock::unix_ms();
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            }
        }
        loop {
            let next = match self.store.events_matching(cursor, &self.filter, 1).await {
                Ok((mut page, _)) => page.pop(),
                Err(error) => {
                    tracing::warn!(webhook = %id, %error, "webhook delivery cannot read the log");
                    tokio::time::sleep(self.settings.base_delay.max(Duration::from_secs(1))).await;
                    continue;
                }
            };
            let Some(event) = next else {
                // Nothing pending: wait for a matching event (or a lag: read the log again).
                loop {
                    match rx.recv().await {
                        Ok(e) if e.seq > cursor && self.filter.matches(&e) => break,
                        Ok(_) => continue,
                        Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => return,
                    }
                }
                continue;
            };
            let seq = event.seq;
            let body = match serde_json::to_vec(&Event::from(event)) {
                Ok(b) => b,
                Err(error) => {
                    tracing::error!(webhook = %id, seq, %error, "cannot encode event");
                    return;
                }
            };
            let still_there = match attempt(&self.hook, seq, body, self.settings.timeout).await {
                Attempt::Delivered(status) => {
                    cursor = seq;
                    attempts = 0;
                    self.store.webhook_delivered(id, seq, status).await
                }
                Attempt::Failed { status, error } => {
                    attempts += 1;
                    let delay = retry_delay(
                        self.settings.base_delay,
                        self.settings.max_delay,
                        attempts,
                        rand::random_range(0.8..1.2),
                    );
                    tracing::debug!(webhook = %id, seq, attempts, ?status, error, ?delay,
                        "webhook delivery failed; retrying");
                    let next_ms = crate::clock::unix_ms() + delay.as_millis() as i64;
                    let saved = self
                        .store
                        .webhook_failed(id, attempts, status, &error, next_ms)
                        .await;
                    tokio::time::sleep(delay).await;
                    saved
                }
            };
            match still_there {
                Ok(true) => {}
                Ok(false) => return, // deleted
                Err(error) => {
                    tracing::warn!(webhook = %id, %error, "cannot save the webhook delivery state")
                }
            }
        }
    }
}

/// The wait before retry number `attempts` (1-based): `base · 2^(attempts-1)`, at most `max`,
/// times `jitter` (about 0.8–1.2, so that receivers coming back are not hit all at once),
/// never more than `max`.
pub fn retry_delay(base: Duration, max: Duration, attempts: i64, jitter: f64) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let delay = base.saturating_mul(1u32 << exp).min(max);
    delay.mul_f64(jitter.clamp(0.0, 2.0)).min(max)
}

/// The `Switchboard-Signature` value for `body` at Unix time `t`.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// One POST of one event.
async fn attempt(hook: &WebhookRecord, seq: i64, body: Vec<u8>, timeout: Duration) -> Attempt {
    let id = ("Switchboard-Event-Id", seq.to_string());
    post_signed(&hook.url, &hook.secret, id, body, timeout).await
}

/// One signed POST of `body` to `url`, with the idempotency header `id` (name, value); the
/// signature is [`signature`] with `secret`.
pub async fn post_signed(
    url: &str,
    secret: &str,
    id: (&'static str, String),
    body: Vec<u8>,
    timeout: Duration,
) -> Attempt {
    let client = match client() {
        Ok(c) => c,
        Err(error) => {
            return Attempt::Failed {
                status: None,
                error,
            };
        }
    };
    let t = crate::clock::unix_ms() / 1000;
    let sig = signature(secret, t, &body);
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(id.0, id.1)
        .header("Switchboard-Signature", sig)
        .body(body)
        .timeout(timeout)
        .send();
    let response = match tokio::time::timeout(timeout, sent).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return Attempt::Failed {
                status: None,
                error: error_text(&e),
            };
        }
        Err(_) => {
            return Attempt::Failed {
                status: None,
                error: format!("timed out after {timeout:?}"),
            };
        }
    };
    let status = response.status();
    if status.is_success() {
        Attempt::Delivered(status.as_u16())
    } else {
        Attempt::Failed {
            status: Some(status.as_u16()),
            error: format!("HTTP {status}"),
        }
    }
}

/// The delivery client: rustls, no redirects (a signed POST is not replayed elsewhere).
fn client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .use_rustls_tls()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// The error and its causes, shortened.
fn error_text(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    if msg.len() > MAX_ERROR_LEN {
        let mut cut = MAX_ERROR_LEN;
        while !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        msg.truncate(cut);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_from_the_base_up_to_the_cap() {
        let base = Duration::from_secs(1);
        let max = MAX_RETRY_DELAY;
        assert_eq!(retry_delay(base, max, 1, 1.0), Duration::from_secs(1));
        assert_eq!(retry_delay(base, max, 2, 1.0), Duration::from_secs(2));
        assert_eq!(retry_delay(base, max, 5, 1.0), Duration::from_secs(16));
        assert_eq!(retry_delay(base, max, 9, 1.0), Duration::from_secs(256));
        assert_eq!(retry_delay(base, max, 10, 1.0), max);
        assert_eq!(retry_delay(base, max, 10, 1.2), max);
        assert_eq!(retry_delay(base, max, 1_000_000, 1.0), max);
        assert_eq!(retry_delay(base, max, 2, 1.2), Duration::from_millis(2400));
    }

    #[test]
    fn signature_is_hmac_sha256_of_time_dot_body() {
        // Pinned against an independent computation
        // (python3: hmac.new(b"key", b"1700000000.{}", hashlib.sha256).hexdigest()).
        assert_eq!(
            signature("key", 1_700_000_000, b"{}"),
            "t=1700000000,v1=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }
}
