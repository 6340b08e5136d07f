//! The HTTP side of a webhook step: POST the session context as JSON, read a JSON reply.
//!
//! One shared client (rustls, at most 3 redirects, `User-Agent: switchboard/VERSION`); only
//! `http` and `https` URLs; the step's timeout covers the whole exchange, reply body included;
//! a reply is at most [`MAX_REPLY_BYTES`].

use std::sync::OnceLock;
use std::time::Duration;

/// Why a webhook gave no usable reply.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook timed out after {0:?}")]
    Timeout(Duration),
    #[error("webhook request failed: {0}")]
    Http(String),
    #[error("webhook answered HTTP {0}")]
    Status(u16),
    #[error("webhook reply is not valid JSON: {0}")]
    InvalidJson(String),
}

/// The largest reply body read: 1 MiB.
pub const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 3;

/// POSTs `body` to `url` and returns the parsed JSON reply.
pub async fn post(
    url: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<serde_json::Value, WebhookError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| WebhookError::Http(format!("invalid URL {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(WebhookError::Http(format!(
            "unsupported URL scheme {:?} in {url:?}: only http and https",
            parsed.scheme()
        )));
    }
    let client = client()?;
    let exchange = async {
        let mut response = client
            .post(parsed)
            .json(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| from_reqwest(e, timeout))?;
        let status = response.status();
        if !status.is_success() {
            return Err(WebhookError::Status(status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_REPLY_BYTES as u64)
        {
            return Err(too_big());
        }
        let mut buf = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| from_reqwest(e, timeout))?
        {
            if buf.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(too_big());
            }
            buf.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&buf).map_err(|e| WebhookError::InvalidJson(e.to_string()))
    };
    // reqwest's own timeout covers the body too; this one also bounds anything around it.
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(WebhookError::Timeout(timeout)),
    }
}

/// The process-wide client (connection pool, TLS configuration).
fn client() -> Result<&'static reqwest::Client, WebhookError> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .use_rustls_tls()
                .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
                .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| WebhookError::Http(format!("cannot build the HTTP client: {e}")))
}

fn from_reqwest(e: reqwest::Error, timeout: Duration) -> WebhookError {
    if e.is_timeout() {
        return WebhookError::Timeout(timeout);
    }
    // The chain says why (connection refused, TLS, too many redirects): keep all of it.
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    WebhookError::Http(msg)
}

fn too_big() -> WebhookError {
    WebhookError::Http(format!("reply larger than {MAX_REPLY_BYTES} bytes"))
}
