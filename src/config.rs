//! Server configuration: a TOML file (every key optional, each default a named function),
//! overridden by command-line flags, then checked by [`Config::validate`], whose errors name
//! the offending key.
//!
//! ```toml
//! data_dir = "./data"                      # default "./data"
//! database_url = "sqlite://./data/switchboard.db"  # default: <data_dir>/switchboard.db
//!
//! [sip]
//! listen = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
//! domain = "switchboard"                   # digest realm and our SIP domain
//! public_ip = "203.0.113.7"                # default: the first listen address
//! trusted_cidrs = []                       # sources not challenged (SBCs, trunks, load generators)
//! force_rport = true                       # answer UDP requests at their source port, as if
//!                                          # they carried rport (RFC 3581); false: Via sent-by
//! no_answer_timeout_secs = 30
//! min_expires_secs = 60
//! max_expires_secs = 3600
//! default_expires_secs = 3600
//! nonce_ttl_secs = 300
//! digest_algorithms = ["MD5"]              # add "SHA-256" (RFC 8760) only if every phone
//!                                          # copes: baresip 1.0 and SIPp 3.6 fail when offered it
//! auth_failures_before_throttle = 10       # per source IP within auth_throttle_window_secs
//! auth_throttle_window_secs = 60
//!
//! [http]
//! listen = "127.0.0.1:8080"
//! cors_origins = []                        # origins allowed to call /v1 from a browser
//!                                          # ("https://app.example.com"); none: CORS off
//! max_body_bytes = 65536                   # larger request bodies get 413 (at least 1024)
//! rate_limit_per_sec = 50                  # requests per second per API key (429 beyond; >= 1)
//! rate_limit_burst = 100                   # >= 1
//! webhook_retry_base_ms = 1000             # first webhook retry delay; doubles up to 5 min
//!
//! [rtp]
//! ports = "20000-29999"
//!
//! [shutdown]
//! drain_timeout_secs = 10
//! retry_after_secs = 30
//!
//! [recording]
//! record_calls = false                     # `serve --record-calls` turns it on
//! mixed_mono = false                       # also write a mixed mono companion file
//! retention_days = 0                       # delete recordings older than this; 0 = keep
//! sample_rate = 8000                       # 8000 or 16000
//!
//! [ivr]
//! dialplans = "dialplans"                  # a directory of *.toml dialplans, or one file
//!
//! [[trunk]]                                # repeatable; none by default
//! name = "carrier"
//! host = "198.51.100.7:5060"               # IP:PORT; its requests are trusted
//! prefixes = ["+44"]                       # E.164 prefixes it carries ("+" for all)
//! from = "+442071234567"                   # optional caller number on calls out
//!
//! [chat]
//! continuity_minutes = 30                  # a customer's session stays joinable this long
//! default_region = ""                      # e.g. "GB": region of numbers without +CC
//! mask_patterns = []                       # regexes masked in stored text (cards always are)
//! widget_origins = []                      # sites that may embed /widget.js (own origin always)
//! prechat_fields = ["name", "phone", "email"]
//! visitor_secret = "…"                     # or SWITCHBOARD_CHAT_SECRET; else <data_dir>/chat-secret
//! visitor_token_hours = 720
//! messages_per_minute = 30                 # per visitor
//! attachment_max_bytes = 10485760          # images and PDF, checked by content
//! call_me_flow = "main"                    # "Call me" in the widget runs this flow, or
//! call_me_connect_to = "2001"              # connects to this extension (neither: no button)
//! queue = "support"                        # new conversations wait here for an agent (ACD)
//! ```
//!
//! Secrets (the nonce secret) come from the environment (`SWITCHBOARD_NONCE_SECRET`) or are
//! generated per process.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

/// A configuration problem, naming the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("invalid value for `{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// The whole configuration as read from the file (all keys optional).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub sip: SipConfig,
    pub http: HttpConfig,
    pub rtp: RtpConfig,
    pub shutdown: ShutdownConfig,
    pub media: MediaConfig,
    pub recording: RecordingConfig,
    pub ivr: IvrConfig,
    pub chat: ChatConfig,
    /// `[[trunk]]`: carriers reached by phone number, trusted by address.
    #[serde(rename = "trunk")]
    pub trunks: Vec<TrunkConfig>,
}

/// `[[trunk]]`: a carrier or SBC at a fixed address (the simplest form: no registration).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    pub name: String,
    /// `IP:PORT` of the trunk; its requests are trusted (not challenged).
    pub host: String,
    /// E.164 prefixes it carries (`"+44"`; `"+"` for every number).
    pub prefixes: Vec<String>,
    /// Caller number presented on calls out by it.
    pub from: Option<String>,
}

/// `[chat]`: conversations, customer identities and session continuity (issue 12).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    /// A customer's session stays joinable (a call after a chat, a chat after a call) this
    /// many minutes after its last activity.
    pub continuity_minutes: u64,
    /// Region for phone numbers written without a country code (ISO 3166, e.g. `GB`); empty:
    /// such numbers are kept as they came.
    pub default_region: String,
    /// Regular expressions masked (`•••`) in stored text besides card numbers, e.g.
    /// national id numbers.
    pub mask_patterns: Vec<String>,
    /// Sites allowed to embed the chat widget (`https://www.example.com`); the server's own
    /// origin always may.
    pub widget_origins: Vec<String>,
    /// The pre-chat form's fields, in order: any of `name`, `phone`, `email` (all optional
    /// for the visitor); empty: no form.
    pub prechat_fields: Vec<String>,
    /// Signs visitor tokens; `SWITCHBOARD_CHAT_SECRET` in the environment wins; when neither
    /// is set, a key is generated once and kept in `<data_dir>/chat-secret`.
    pub visitor_secret: Option<String>,
    /// A visitor token's lifetime (the conversation is kept across reloads while it lasts).
    pub visitor_token_hours: u64,
    /// Messages one visitor may send per minute (more get an error frame).
    pub messages_per_minute: u32,
    /// Largest chat attachment (images and PDF), bytes; apart from `http.max_body_bytes`.
    pub attachment_max_bytes: usize,
    /// "Call me" in the widget: the flow the customer's answered call runs (e.g. "main"), or
    /// the extension it is connected to; without either the widget offers no "Call me".
    pub call_me_flow: Option<String>,
    pub call_me_connect_to: Option<String>,
    /// New conversations from customers wait in this queue of the dialplan for an agent;
    /// none: they are not routed (an integrator assigns them).
    pub queue: Option<String>,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            continuity_minutes: 30,
            default_region: String::new(),
            mask_patterns: Vec::new(),
            widget_origins: Vec::new(),
            prechat_fields: vec!["name".into(), "phone".into(), "email".into()],
            visitor_secret: None,
            visitor_token_hours: 24 * 30,
            messages_per_minute: 30,
            attachment_max_bytes: 10 * 1024 * 1024,
            call_me_flow: None,
            call_me_connect_to: None,
            queue: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    pub listen: Vec<String>,
    pub domain: String,
    pub public_ip: Option<IpAddr>,
    pub trusted_cidrs: Vec<String>,
    pub force_rport: bool,
    pub no_answer_timeout_secs: u64,
    pub min_expires_secs: u32,
    pub max_expires_secs: u32,
    pub default_expires_secs: u32,
    pub nonce_ttl_secs: u64,
    pub digest_algorithms: Vec<String>,
    pub auth_failures_before_throttle: u32,
    pub auth_throttle_window_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Browser origins allowed by CORS on `/v1` (none: CORS off).
    pub cors_origins: Vec<String>,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Sustained requests per second per API key.
    pub rate_limit_per_sec: u32,
    /// Requests a key may make at once above the sustained rate.
    pub rate_limit_burst: u32,
    /// First retry delay of a failed webhook delivery, in ms (doubles up to 5 minutes).
    pub webhook_retry_base_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtpConfig {
    pub ports: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    pub drain_timeout_secs: u64,
    pub retry_after_secs: u32,
}

/// `[media]`: the media engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Folder of prompts and music on hold; relative paths are taken from the working
    /// directory.
    pub dir: PathBuf,
    /// Offer the callee codecs the caller lacks and transcode between them.
    pub transcoding: bool,
    /// Detect in-band DTMF on legs that did not negotiate telephone-event.
    pub inband_dtmf: bool,
    /// Ringback, busy and congestion tones: `us`, `eu` or `uk`.
    pub tone_region: String,
    /// Music on hold, a WAV file in `media.dir`; empty plays silence to a held party.
    pub music_on_hold: String,
    /// Dialled numbers starting with this join the conference room named by the rest
    /// (`*81234` joins room `1234`); empty disables conferences.
    pub conference_prefix: String,
}

/// `[recording]`: call recording (files under `<data_dir>/recordings/`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Record every answered call (stereo: caller left, other party right).
    pub record_calls: bool,
    /// Also write a mixed mono companion file next to each stereo recording.
    pub mixed_mono: bool,
    /// Recordings older than this many days are deleted; 0 keeps them forever.
    pub retention_days: u32,
    /// Recording sample rate: 8000 or 16000.
    pub sample_rate: u32,
}

/// `[ivr]`: IVR menus and routing (`dialplans/README.md`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IvrConfig {
    /// The dialplan: a directory (every `*.toml` in it, sorted by name) or one file; relative
    /// paths are taken from the working directory.
    pub dialplans: PathBuf,
}

/// A SIP listening socket, written `udp:IP:PORT` or `tcp:IP:PORT` (`udp:[::1]:5060`).
pub use crate::sip::transport::Listen as SipListen;

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub sip_listen: Vec<SipListen>,
    pub domain: String,
    pub public_ip: IpAddr,
    pub trusted: Vec<IpNet>,
    pub force_rport: bool,
    pub no_answer_timeout: std::time::Duration,
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    pub nonce_ttl: std::time::Duration,
    pub digest_algorithms: Vec<crate::sip::auth::Algorithm>,
    pub auth_failures_before_throttle: u32,
    pub auth_throttle_window: std::time::Duration,
    pub http_listen: SocketAddr,
    /// The HTTP API's limits and CORS (`[http]`).
    pub http: HttpConfig,
    pub rtp_ports: (u16, u16),
    pub drain_timeout: std::time::Duration,
    pub retry_after_secs: u32,
    pub media: MediaConfig,
    pub tone_region: crate::media::tone::ToneRegion,
    pub recording: RecordingConfig,
    pub ivr: IvrConfig,
    pub chat: crate::chat::ChatSettings,
    pub trunks: Vec<crate::session::trunks::Trunk>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_sip_listen() -> Vec<String> {
    vec!["udp:127.0.0.1:5060".into(), "tcp:127.0.0.1:5060".into()]
}
fn default_domain() -> String {
    "switchboard".into()
}
fn default_no_answer_timeout_secs() -> u64 {
    30
}
fn default_min_expires_secs() -> u32 {
    60
}
fn default_max_expires_secs() -> u32 {
    3600
}
fn default_default_expires_secs() -> u32 {
    3600
}
fn default_nonce_ttl_secs() -> u64 {
    300
}
fn default_digest_algorithms() -> Vec<String> {
    vec!["MD5".into()]
}
fn default_auth_failures_before_throttle() -> u32 {
    10
}
fn default_auth_throttle_window_secs() -> u64 {
    60
}
fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_rtp_ports() -> String {
    "20000-29999".into()
}
fn default_drain_timeout_secs() -> u64 {
    10
}
fn default_retry_after_secs() -> u32 {
    30
}
fn default_record_calls() -> bool {
    false
}
fn default_mixed_mono() -> bool {
    false
}
fn default_retention_days() -> u32 {
    0
}
fn default_recording_sample_rate() -> u32 {
    8000
}
fn default_dialplans() -> PathBuf {
    PathBuf::from("dialplans")
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: default_data_dir(),
            database_url: None,
            sip: SipConfig::default(),
            http: HttpConfig::default(),
            rtp: RtpConfig::default(),
            shutdown: ShutdownConfig::default(),
            media: MediaConfig::default(),
            recording: RecordingConfig::default(),
            ivr: IvrConfig::default(),
            chat: ChatConfig::default(),
            trunks: Vec::new(),
        }
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: default_sip_listen(),
            domain: default_domain(),
            public_ip: None,
            trusted_cidrs: Vec::new(),
            force_rport: true,
            no_answer_timeout_secs: default_no_answer_timeout_secs(),
            min_expires_secs: default_min_expires_secs(),
            max_expires_secs: default_max_expires_secs(),
            default_expires_secs: default_default_expires_secs(),
            nonce_ttl_secs: default_nonce_ttl_secs(),
            digest_algorithms: default_digest_algorithms(),
            auth_failures_before_throttle: default_auth_failures_before_throttle(),
            auth_throttle_window_secs: default_auth_throttle_window_secs(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_http_listen(),
            cors_origins: Vec::new(),
            max_body_bytes: 65_536,
            rate_limit_per_sec: 50,
            rate_limit_burst: 100,
            webhook_retry_base_ms: 1000,
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            dir: default_media_dir(),
            transcoding: true,
            inband_dtmf: true,
            tone_region: "us".into(),
            music_on_hold: "moh.wav".into(),
            conference_prefix: "*8".into(),
        }
    }
}

fn default_media_dir() -> PathBuf {
    PathBuf::from("media")
}

impl Default for RtpConfig {
    fn default() -> Self {
        RtpConfig {
            ports: default_rtp_ports(),
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_timeout_secs: default_drain_timeout_secs(),
            retry_after_secs: default_retry_after_secs(),
        }
    }
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            record_calls: default_record_calls(),
            mixed_mono: default_mixed_mono(),
            retention_days: default_retention_days(),
            sample_rate: default_recording_sample_rate(),
        }
    }
}

impl Default for IvrConfig {
    fn default() -> Self {
        IvrConfig {
            dialplans: default_dialplans(),
        }
    }
}

impl Config {
    /// Reads a TOML file; unknown keys are errors that name the key.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text).map_err(|e| match e {
            ConfigError::Syntax { message, .. } => ConfigError::Syntax {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: PathBuf::from("<config>"),
            message: e.to_string().trim().to_owned(),
        })
    }

    /// The database URL: the explicit one, or the SQLite file under the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(u) => u.clone(),
            None => format!(
                "sqlite://{}",
                self.data_dir.join("switchboard.db").display()
            ),
        }
    }

    /// Checks every value and produces the settings the server runs with.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.into(),
            message,
        };
        if self.sip.listen.is_empty() {
            return Err(invalid(
                "sip.listen",
                "at least one listen address is required".into(),
            ));
        }
        let tone_region = match self.media.tone_region.as_str() {
            "us" => crate::media::tone::ToneRegion::Us,
            "eu" => crate::media::tone::ToneRegion::Eu,
            "uk" => crate::media::tone::ToneRegion::Uk,
            other => {
                return Err(invalid(
                    "media.tone_region",
                    format!("`{other}` is not one of us, eu, uk"),
                ));
            }
        };
        if self.media.conference_prefix.contains(['@', ';', ' ']) {
            return Err(invalid(
                "media.conference_prefix",
                "must be a dialable prefix (no `@`, `;` or spaces)".into(),
            ));
        }
        let mut sip_listen = Vec::new();
        for (i, s) in self.sip.listen.iter().enumerate() {
            let l = s
                .parse::<SipListen>()
                .map_err(|m| invalid(&format!("sip.listen[{i}]"), m.to_string()))?;
            sip_listen.push(l);
        }
        let mut trusted = Vec::new();
        for (i, s) in self.sip.trusted_cidrs.iter().enumerate() {
            let net = parse_cidr(s).map_err(|m| invalid(&format!("sip.trusted_cidrs[{i}]"), m))?;
            trusted.push(net);
        }
        let mut trunks = Vec::new();
        for (i, t) in self.trunks.iter().enumerate() {
            let key = |k: &str| format!("trunk[{i}].{k}");
            if t.name.trim().is_empty()
                || trunks
                    .iter()
                    .any(|o: &crate::session::trunks::Trunk| o.name == t.name)
            {
                return Err(invalid(
                    &key("name"),
                    "must be a unique, non-empty name".into(),
                ));
            }
            let addr: SocketAddr = t
                .host
                .parse()
                .map_err(|_| invalid(&key("host"), format!("{:?} is not IP:PORT", t.host)))?;
            if t.prefixes.is_empty() {
                return Err(invalid(
                    &key("prefixes"),
                    "at least one prefix is needed".into(),
                ));
            }
            for (j, p) in t.prefixes.iter().enumerate() {
                crate::session::trunks::check_prefix(p).map_err(|m| {
                    invalid(&format!("trunk[{i}].prefixes[{j}]"), format!("{p:?} {m}"))
                })?;
            }
            trusted.push(IpNet::from(addr.ip()));
            trunks.push(crate::session::trunks::Trunk {
                name: t.name.clone(),
                addr,
                prefixes: t.prefixes.clone(),
                from: t.from.clone(),
            });
        }
        if self.sip.domain.trim().is_empty() || self.sip.domain.contains(['"', '\\', ' ']) {
            return Err(invalid(
                "sip.domain",
                format!("{:?} is not a usable domain", self.sip.domain),
            ));
        }
        if self.sip.no_answer_timeout_secs == 0 {
            return Err(invalid(
                "sip.no_answer_timeout_secs",
                "must be at least 1".into(),
            ));
        }
        if self.sip.min_expires_secs == 0 || self.sip.min_expires_secs > self.sip.max_expires_secs {
            return Err(invalid(
                "sip.min_expires_secs",
                "must be at least 1 and not above sip.max_expires_secs".into(),
            ));
        }
        if !(self.sip.min_expires_secs..=self.sip.max_expires_secs)
            .contains(&self.sip.default_expires_secs)
        {
            return Err(invalid(
                "sip.default_expires_secs",
                "must lie between sip.min_expires_secs and sip.max_expires_secs".into(),
            ));
        }
        if self.sip.nonce_ttl_secs == 0 {
            return Err(invalid("sip.nonce_ttl_secs", "must be at least 1".into()));
        }
        let mut digest_algorithms = Vec::new();
        for (i, a) in self.sip.digest_algorithms.iter().enumerate() {
            match crate::sip::auth::Algorithm::parse(a) {
                Some((alg, false)) => digest_algorithms.push(alg),
                _ => {
                    return Err(invalid(
                        &format!("sip.digest_algorithms[{i}]"),
                        format!("{a:?} is not MD5 or SHA-256"),
                    ));
                }
            }
        }
        if digest_algorithms.is_empty() {
            return Err(invalid(
                "sip.digest_algorithms",
                "at least one algorithm is required".into(),
            ));
        }
        let rtp_ports = parse_port_range(&self.rtp.ports).map_err(|m| invalid("rtp.ports", m))?;
        let public_ip = match self.sip.public_ip {
            Some(ip) if ip.is_unspecified() => {
                return Err(invalid(
                    "sip.public_ip",
                    "must be a concrete address".into(),
                ));
            }
            Some(ip) => ip,
            None => sip_listen
                .iter()
                .map(|l| l.addr.ip())
                .find(|ip| !ip.is_unspecified())
                .unwrap_or(IpAddr::from([127, 0, 0, 1])),
        };
        if !crate::media::recorder::SAMPLE_RATES.contains(&self.recording.sample_rate) {
            return Err(invalid(
                "recording.sample_rate",
                format!("{} is not 8000 or 16000", self.recording.sample_rate),
            ));
        }
        self.http.check().map_err(|(key, m)| invalid(&key, m))?;
        let chat = self.chat.settings().map_err(|(key, m)| invalid(key, m))?;
        let database_url = self.database_url();
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database_url",
                "must start with sqlite:, postgres:// or postgresql://".into(),
            ));
        }
        Ok(Settings {
            data_dir: self.data_dir.clone(),
            database_url,
            sip_listen,
            domain: self.sip.domain.clone(),
            public_ip,
            trusted,
            force_rport: self.sip.force_rport,
            no_answer_timeout: std::time::Duration::from_secs(self.sip.no_answer_timeout_secs),
            min_expires: self.sip.min_expires_secs,
            max_expires: self.sip.max_expires_secs,
            default_expires: self.sip.default_expires_secs,
            nonce_ttl: std::time::Duration::from_secs(self.sip.nonce_ttl_secs),
            digest_algorithms,
            auth_failures_before_throttle: self.sip.auth_failures_before_throttle,
            auth_throttle_window: std::time::Duration::from_secs(
                self.sip.auth_throttle_window_secs,
            ),
            http_listen: self.http.listen,
            http: self.http.clone(),
            rtp_ports,
            drain_timeout: std::time::Duration::from_secs(self.shutdown.drain_timeout_secs),
            retry_after_secs: self.shutdown.retry_after_secs,
            media: self.media.clone(),
            tone_region,
            recording: self.recording.clone(),
            ivr: self.ivr.clone(),
            chat,
            trunks,
        })
    }
}

impl ChatConfig {
    /// The chat service's settings; the error names the key (`chat.…`).
    fn settings(&self) -> Result<crate::chat::ChatSettings, (&'static str, String)> {
        if self.continuity_minutes > 7 * 24 * 60 {
            return Err(("chat.continuity_minutes", "must be at most a week".into()));
        }
        let phones = crate::domain::phone::PhoneRules::new(Some(&self.default_region))
            .map_err(|m| ("chat.default_region", m))?;
        let masker = crate::chat::mask::Masker::new(&self.mask_patterns)
            .map_err(|m| ("chat.mask_patterns", m))?;
        for (i, f) in self.prechat_fields.iter().enumerate() {
            if !matches!(f.as_str(), "name" | "phone" | "email") {
                return Err((
                    "chat.prechat_fields",
                    format!("[{i}] {f:?} is not name, phone or email"),
                ));
            }
        }
        for o in &self.widget_origins {
            let ok = reqwest::Url::parse(o).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https") && u.host_str().is_some() && u.path() == "/"
            }) && !o.ends_with('/');
            if !ok {
                return Err((
                    "chat.widget_origins",
                    format!("{o:?} is not an origin like https://www.example.com"),
                ));
            }
        }
        if !(1..=24 * 365).contains(&self.visitor_token_hours) {
            return Err(("chat.visitor_token_hours", "must be 1 to 8760".into()));
        }
        if !(1024..=100 * 1024 * 1024).contains(&self.attachment_max_bytes) {
            return Err((
                "chat.attachment_max_bytes",
                "must be 1024 to 104857600".into(),
            ));
        }
        if self.messages_per_minute == 0 {
            return Err(("chat.messages_per_minute", "must be at least 1".into()));
        }
        let token_key = match &self.visitor_secret {
            Some(s) if s.len() < 16 => {
                return Err((
                    "chat.visitor_secret",
                    "must be at least 16 characters".into(),
                ));
            }
            Some(s) => Some(crate::chat::visitor::TokenKey::new(s.as_bytes())),
            None => None,
        };
        Ok(crate::chat::ChatSettings {
            continuity_ms: (self.continuity_minutes * 60_000) as i64,
            phones,
            masker,
            widget_origins: self.widget_origins.clone(),
            prechat_fields: self.prechat_fields.clone(),
            token_key,
            token_ttl_ms: (self.visitor_token_hours * 3_600_000) as i64,
            messages_per_minute: self.messages_per_minute,
            attachment_max_bytes: self.attachment_max_bytes,
            call_me_flow: self.call_me_flow.clone(),
            call_me_connect_to: self.call_me_connect_to.clone(),
            queue: self.queue.clone(),
        })
    }
}

impl HttpConfig {
    /// Checks the `[http]` limits and origins; the error names the key (`http.…`).
    fn check(&self) -> Result<(), (String, String)> {
        if self.rate_limit_per_sec == 0 {
            return Err((
                "http.rate_limit_per_sec".into(),
                "must be at least 1".into(),
            ));
        }
        if self.rate_limit_burst == 0 {
            return Err(("http.rate_limit_burst".into(), "must be at least 1".into()));
        }
        if self.max_body_bytes < 1024 {
            return Err((
                "http.max_body_bytes".into(),
                format!("{} is below the minimum of 1024", self.max_body_bytes),
            ));
        }
        for (i, origin) in self.cors_origins.iter().enumerate() {
            check_origin(origin).map_err(|m| (format!("http.cors_origins[{i}]"), m))?;
        }
        Ok(())
    }
}

/// A browser origin: `scheme://host[:port]`, nothing after it (no path, no trailing slash).
fn check_origin(origin: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "{origin:?} is not an origin scheme://host[:port]: {why}"
        ))
    };
    let Some((scheme, rest)) = origin.split_once("://") else {
        return bad("no scheme");
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return bad("bad scheme");
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return bad("unclosed IPv6 bracket");
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return bad("bad IPv6 address");
        }
        match after {
            "" => (addr, None),
            p => match p.strip_prefix(':') {
                Some(port) => (addr, Some(port)),
                None => return bad("junk after the host"),
            },
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let host_ok = !host.is_empty()
        && (rest.starts_with('[')
            || host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            }));
    if !host_ok {
        return bad("bad host (a path or trailing slash is not allowed)");
    }
    if let Some(port) = port
        && !(port.parse::<u16>().is_ok_and(|p| p > 0) && port.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad("bad port");
    }
    Ok(())
}

/// Parses `LOW-HIGH`; the range must hold at least one even/odd pair.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not LOW-HIGH"))?;
    let lo: u16 = lo
        .trim()
        .parse()
        .map_err(|_| format!("{lo:?} is not a port number"))?;
    let hi: u16 = hi
        .trim()
        .parse()
        .map_err(|_| format!("{hi:?} is not a port number"))?;
    if lo < 1024 || hi < lo.saturating_add(1) {
        return Err(format!("{s:?}: need 1024 <= LOW < HIGH"));
    }
    Ok((lo, hi))
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not a CIDR (10.0.0.0/8)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transport::Transport;

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let s = Config::from_toml("")
            .and_then(|c| c.validate())
            .expect("defaults are valid");
        assert_eq!(s.database_url, "sqlite://./data/switchboard.db");
        assert_eq!(s.sip_listen.len(), 2);
        assert_eq!(s.sip_listen[0].to_string(), "udp:127.0.0.1:5060");
        assert_eq!(s.sip_listen[1].to_string(), "tcp:127.0.0.1:5060");
        assert_eq!(s.http_listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.rtp_ports, (20000, 29999));
        assert_eq!(s.no_answer_timeout.as_secs(), 30);
        assert!(s.trusted.is_empty(), "nothing is trusted by default");
    }

    #[test]
    fn unknown_key_is_an_error_naming_the_key() {
        let err = Config::from_toml("[sip]\nlisten_on = []\n").expect_err("unknown key");
        assert!(err.to_string().contains("listen_on"), "{err}");
    }

    #[test]
    fn bad_value_is_an_error_naming_the_key() {
        let mut c = Config::default();
        c.sip.listen = vec!["udp:127.0.0.1:5060".into(), "sctp:1.2.3.4:5".into()];
        let err = c.validate().expect_err("bad transport");
        assert!(err.to_string().contains("sip.listen[1]"), "{err}");

        let mut c = Config::default();
        c.rtp.ports = "30000-20000".into();
        assert!(
            c.validate()
                .expect_err("bad range")
                .to_string()
                .contains("rtp.ports")
        );

        let mut c = Config::default();
        c.sip.trusted_cidrs = vec!["10.0.0.0/33".into()];
        let err = c.validate().expect_err("bad cidr");
        assert!(err.to_string().contains("sip.trusted_cidrs[0]"), "{err}");
    }

    #[test]
    fn recording_section_defaults_parse_and_bad_rate_names_the_key() {
        let s = Config::default().validate().expect("defaults are valid");
        assert_eq!(s.recording, RecordingConfig::default());
        assert!(!s.recording.record_calls);
        assert!(!s.recording.mixed_mono);
        assert_eq!(s.recording.retention_days, 0);
        assert_eq!(s.recording.sample_rate, 8000);

        let c = Config::from_toml(
            "[recording]\nrecord_calls = true\nmixed_mono = true\nretention_days = 30\nsample_rate = 16000\n",
        )
        .expect("parses");
        let s = c.validate().expect("valid");
        assert!(s.recording.record_calls && s.recording.mixed_mono);
        assert_eq!(
            (s.recording.retention_days, s.recording.sample_rate),
            (30, 16000)
        );

        let err = Config::from_toml("[recording]\nsample_rate = 44100\n")
            .expect("parses")
            .validate()
            .expect_err("44.1 kHz is refused");
        assert!(err.to_string().contains("recording.sample_rate"), "{err}");

        let err = Config::from_toml("[recording]\nkeep_days = 3\n").expect_err("unknown key");
        assert!(err.to_string().contains("keep_days"), "{err}");
    }

    #[test]
    fn ivr_section_defaults_to_the_dialplans_directory_and_refuses_unknown_keys() {
        let s = Config::default().validate().expect("defaults are valid");
        assert_eq!(s.ivr.dialplans, PathBuf::from("dialplans"));

        let c =
            Config::from_toml("[ivr]\ndialplans = \"/etc/switchboard/plans\"\n").expect("parses");
        assert_eq!(
            c.validate().expect("valid").ivr.dialplans,
            PathBuf::from("/etc/switchboard/plans")
        );

        let err = Config::from_toml("[ivr]\ndialplan = \"x\"\n").expect_err("unknown key");
        assert!(err.to_string().contains("dialplan"), "{err}");
    }

    #[test]
    fn http_section_limits_and_origins_are_checked_naming_the_key() {
        let s = Config::from_toml(
            "[http]\ncors_origins = [\"https://app.example.com\", \"http://localhost:3000\", \"http://[::1]:8080\"]\nmax_body_bytes = 1024\nrate_limit_per_sec = 1\nrate_limit_burst = 1\n",
        )
        .expect("parses")
        .validate()
        .expect("valid");
        assert_eq!(s.http.cors_origins.len(), 3);
        assert_eq!(s.http.max_body_bytes, 1024);

        let refused = |toml: &str, key: &str| {
            let err = Config::from_toml(toml)
                .expect("parses")
                .validate()
                .expect_err(toml);
            assert!(err.to_string().contains(key), "{toml}: {err}");
        };
        refused(
            "[http]\nrate_limit_per_sec = 0\n",
            "http.rate_limit_per_sec",
        );
        refused("[http]\nrate_limit_burst = 0\n", "http.rate_limit_burst");
        refused("[http]\nmax_body_bytes = 1023\n", "http.max_body_bytes");
        for origin in [
            "example.com",
            "https://example.com/",
            "https://example.com/app",
            "https://",
            "https://exa mple.com",
            "https://example.com:0",
            "https://example.com:99999",
            "https://example.com:80x",
            "*",
            "1http://example.com",
            "http://[::1",
            "http://[zz]:80",
        ] {
            refused(
                &format!("[http]\ncors_origins = [\"https://ok.example\", {origin:?}]\n"),
                "http.cors_origins[1]",
            );
        }
    }

    #[test]
    fn ipv6_listen_and_cidr_parse() {
        let l: SipListen = "tcp:[::1]:5070".parse().expect("ipv6 listen");
        assert_eq!(l.transport, Transport::Tcp);
        assert_eq!(l.addr.port(), 5070);
        assert_eq!(parse_cidr("127.0.0.1").expect("host").prefix_len(), 32);
    }
}
