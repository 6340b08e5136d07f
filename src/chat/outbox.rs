//! Replies to gateway channels (DRIVER): one task per channel with a `webhook_url` POSTs its
//! undelivered replies one at a time, oldest first, signed with the channel's secret exactly
//! as event webhooks are ([`crate::api::webhooks::delivery`]: `Switchboard-Signature:
//! t=<unix secs>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`), with
//! `Switchboard-Message-Id` as the idempotency key. A 2xx sets the message's delivery time; a
//! failure retries the same reply with the webhooks' backoff, so replies arrive in order. The
//! queue is the messages table itself (`delivered_ms IS NULL`): a restart resumes it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::webhooks::delivery::{Attempt, DeliverySettings, post_signed, retry_delay};
use crate::store::{ChannelRecord, MessageRecord, Store};

/// What a gateway receives for one reply.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GatewayReply {
    /// The message id (also in `Switchboard-Message-Id`).
    pub id: String,
    pub conversation_id: String,
    pub channel: String,
    /// The customer's address on the channel (the `from.id` or phone it wrote from).
    pub to: String,
    pub text: String,
    /// `agent`, `bot` or `system`.
    pub author: String,
    pub author_name: Option<String>,
    /// When it was written, Unix ms.
    pub created_ms: i64,
}

/// Starts, wakes and stops the reply deliveries. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    store: Option<Store>,
    settings: DeliverySettings,
    stop: CancellationToken,
    tasks: Mutex<HashMap<String, Arc<Notify>>>,
    tracker: TaskTracker,
}

impl Outbox {
    pub fn new(store: Store, settings: DeliverySettings) -> Outbox {
        Outbox::with(Some(store), settings)
    }

    /// An outbox that delivers nothing (tests of the chat service alone).
    pub fn detached() -> Outbox {
        Outbox::with(None, DeliverySettings::default())
    }

    fn with(store: Option<Store>, settings: DeliverySettings) -> Outbox {
        Outbox {
            inner: Arc::new(Inner {
                store,
                settings,
                stop: CancellationToken::new(),
                tasks: Mutex::new(HashMap::new()),
                tracker: TaskTracker::new(),
            }),
        }
    }

    /// Starts a task for every stored gateway channel with a webhook; returns how many.
    pub async fn start(&self) -> Result<usize, crate::store::StoreError> {
        let Some(store) = &self.inner.store else {
            return Ok(0);
        };
        let mut n = 0;
        for channel in store.list_channels().await? {
            if channel.webhook_url.is_some() {
                self.spawn(channel);
                n += 1;
            }
        }
        Ok(n)
    }

    /// Starts delivering `channel`'s replies (a no-op without a webhook, when it runs
    /// already, or once stopped).
    pub fn spawn(&self, channel: ChannelRecord) {
        let Some(store) = self.inner.store.clone() else {
            return;
        };
        if self.inner.stop.is_cancelled() || channel.webhook_url.is_none() {
            return;
        }
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if tasks.contains_key(&channel.name) {
            return;
        }
        let wake = Arc::new(Notify::new());
        tasks.insert(channel.name.clone(), wake.clone());
        let task = Delivery {
            store,
            settings: self.inner.settings,
            channel,
            wake,
            stop: self.inner.stop.child_token(),
        };
        self.inner.tracker.spawn(task.run());
    }

    /// A reply was written to a conversation of `channel`.
    pub fn wake(&self, channel: &str) {
        let tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = tasks.get(channel) {
            w.notify_one();
        }
    }

    /// Stops every task and waits for them (an attempt in flight is retried after the
    /// restart: the gateway may see it twice, with the same message id).
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}

struct Delivery {
    store: Store,
    settings: DeliverySettings,
    channel: ChannelRecord,
    wake: Arc<Notify>,
    stop: CancellationToken,
}

impl Delivery {
    async fn run(self) {
        tokio::select! {
            _ = self.stop.cancelled() => {}
            _ = self.deliver() => {}
        }
        tracing::debug!(channel = %self.channel.name, "channel reply delivery stopped");
    }

    async fn deliver(&self) {
        let name = &self.channel.name;
        let (Some(url), Some(secret)) = (&self.channel.webhook_url, &self.channel.secret) else {
            return;
        };
        let mut attempts = self.channel.attempts;
        if let Some(at) = self.channel.next_attempt_ms {
            let wait = at - crate::clock::unix_ms();
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            }
        }
        loop {
            let next = match self.store.next_undelivered_reply(name).await {
                Ok(m) => m,
                Err(error) => {
                    tracing::warn!(channel = %name, %error, "reply delivery cannot read the messages");
                    tokio::time::sleep(self.settings.base_delay.max(Duration::from_secs(1))).await;
                    continue;
                }
            };
            let Some(m) = next else {
                self.wake.notified().await;
                continue;
            };
            let contact = match self.store.get_conversation(m.conversation_id).await {
                Ok(Some(c)) => c.contact,
                Ok(None) => String::new(),
                Err(error) => {
                    tracing::warn!(channel = %name, %error, "reply delivery cannot read the conversation");
                    tokio::time::sleep(self.settings.base_delay.max(Duration::from_secs(1))).await;
                    continue;
                }
            };
            let body = match serde_json::to_vec(&reply_body(&m, contact)) {
                Ok(b) => b,
                Err(error) => {
                    tracing::error!(channel = %name, %error, "cannot encode a reply");
                    return;
                }
            };
            let id = ("Switchboard-Message-Id", m.id.to_string());
            let saved = match post_signed(url, secret, id, body, self.settings.timeout).await {
                Attempt::Delivered(status) => {
                    attempts = 0;
                    let now = crate::clock::unix_ms();
                    self.store.reply_delivered(name, m.id, now, status).await
                }
                Attempt::Failed { status, error } => {
                    attempts += 1;
                    let delay = retry_delay(
                        self.settings.base_delay,
                        self.settings.max_delay,
                        attempts,
                        rand::random_range(0.8..1.2),
                    );
                    tracing::debug!(channel = %name, message = %m.id, attempts, ?status, error,
                        ?delay, "reply delivery failed; retrying");
                    let next_ms = crate::clock::unix_ms() + delay.as_millis() as i64;
                    let saved = self
                        .store
                        .reply_failed(name, attempts, status, &error, next_ms)
                        .await;
                    tokio::time::sleep(delay).await;
                    saved
                }
            };
            if let Err(error) = saved {
                tracing::warn!(channel = %name, %error, "cannot save the reply delivery state");
            }
        }
    }
}

fn reply_body(m: &MessageRecord, to: String) -> GatewayReply {
    GatewayReply {
        id: m.id.to_string(),
        conversation_id: m.conversation_id.to_string(),
        channel: m.channel.clone(),
        to,
        text: m.text.clone(),
        author: m.author.as_str().to_owned(),
        author_name: m.author_name.clone(),
        created_ms: m.created_ms,
    }
}
