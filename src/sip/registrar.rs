//! The registrar (RFC 3261 §10.3) and the location service, plus the digest check shared by
//! REGISTER (401) and INVITE (407) (§22, RFC 7616, RFC 8760).
//!
//! Bindings live in memory for the call path and are written through the store's writer task,
//! so a restart reloads them; expired ones are pruned by [`Registrar::prune`]. Several contacts
//! per extension, Expires / Min-Expires (423), `*` unregistration (§10.3 step 6).
//! Each change is also an event in the log (issue 5): `registration.added` (a new contact),
//! `registration.removed` (Expires 0 or `*`) and `registration.expired` (pruned), with
//! `{ext, contact, transport, source}`.
//!
//! Security: an unknown extension and a wrong password get the same answer (a fresh challenge
//! with the same headers, after the same amount of work), and a source that fails too often
//! within a window is refused without checking and logged on the `security` target.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use super::auth::{AuthOutcome, Authenticator};
use super::dialog::{new_tag, response_with_tag};
use super::message::{Contact, NameAddr, Request, Response, StatusCode, Uri, parse_uri};
use super::transport::{Peer, Transport};
use crate::domain::Extension;
use crate::event::{Event, Registration};
use crate::store::{Binding, Store, StoreCmd, User, WriterHandle};

/// How long a user read from the store is trusted.
pub const USER_CACHE_TTL: Duration = Duration::from_secs(5);
/// Most contacts one extension may bind: each one is a fork of every call to it.
pub const MAX_CONTACTS: usize = 10;
/// Most cached user lookups (unknown names included).
const USER_CACHE_MAX: usize = 100_000;

/// One registered contact of an extension.
#[derive(Debug, Clone)]
pub struct Location {
    pub ext: Extension,
    /// The Contact URI as registered (escapes kept).
    pub contact: String,
    pub uri: Uri,
    /// The flow the REGISTER arrived on: requests to this contact are sent there (NAT, TCP).
    pub source: Peer,
    pub expires_at_ms: i64,
    pub call_id: String,
    pub cseq: u32,
    /// Contact `q` in thousandths (RFC 3261 §20.10).
    pub q: Option<u16>,
    pub user_agent: Option<String>,
}

/// What an authentication attempt decided.
#[derive(Debug)]
pub enum AuthDecision {
    /// The request is allowed; the authenticated extension if there was one (None: trusted).
    Allowed(Option<String>),
    /// Send this response (a challenge, or a refusal).
    Reply(Response),
}

/// The registrar and location service.
pub struct Registrar {
    auth: Authenticator,
    store: Store,
    writer: WriterHandle,
    trusted: Vec<ipnet::IpNet>,
    min_expires: u32,
    max_expires: u32,
    default_expires: u32,
    locations: RwLock<HashMap<String, Vec<Location>>>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    /// Users read from the store, kept for [`USER_CACHE_TTL`] (absent ones too), so a call does
    /// not wait on the database. `user add/remove/passwd` from the CLI shows within that time.
    users: Mutex<HashMap<String, (Instant, Option<User>)>>,
    failures_before_throttle: u32,
    throttle_window: Duration,
    /// HA1 values used for unknown extensions so their check costs the same.
    decoy: User,
}

/// The registrar's settings.
#[derive(Debug, Clone)]
pub struct RegistrarSettings {
    pub realm: String,
    pub nonce_secret: Vec<u8>,
    pub nonce_ttl: Duration,
    pub trusted: Vec<ipnet::IpNet>,
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    pub failures_before_throttle: u32,
    pub throttle_window: Duration,
    /// Digest algorithms offered, in order.
    pub algorithms: Vec<crate::sip::auth::Algorithm>,
}

impl Registrar {
    /// Builds the registrar and loads unexpired bindings from the store.
    pub async fn new(
        s: RegistrarSettings,
        store: Store,
    ) -> Result<Registrar, crate::store::StoreError> {
        let now_ms = crate::clock::unix_ms();
        let mut locations: HashMap<String, Vec<Location>> = HashMap::new();
        for b in store.load_bindings(now_ms).await? {
            if let Some(l) = location_from_binding(&b) {
                locations.entry(l.ext.to_string()).or_default().push(l);
            }
        }
        let count: usize = locations.values().map(Vec::len).sum();
        metrics::gauge!("switchboard_registrations").set(count as f64);
        tracing::info!(bindings = count, "registrations loaded");
        let secrets = crate::sip::auth::user_secrets("decoy", &s.realm, &new_tag());
        let decoy = User {
            ext: String::new(),
            name: None,
            ha1_md5: secrets.ha1_md5,
            ha1_sha256: secrets.ha1_sha256,
            realm: secrets.realm,
            created_ms: 0,
        };
        Ok(Registrar {
            // The digest uri must name our host; SIPp hashes `sip:host:port` whatever the
            // Request-URI's user part is, so the check ignores user and parameters.
            auth: Authenticator::new(&s.realm, &s.nonce_secret, s.nonce_ttl)
                .with_algorithms(&s.algorithms)
                .with_uri_check(crate::sip::auth::UriCheck::SameHost),
            writer: store.writer(),
            store,
            trusted: s.trusted,
            min_expires: s.min_expires,
            max_expires: s.max_expires,
            default_expires: s.default_expires,
            locations: RwLock::new(locations),
            failures: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            failures_before_throttle: s.failures_before_throttle,
            throttle_window: s.throttle_window,
            decoy,
        })
    }

    /// True when `ip` is in a trusted network (no challenge).
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The current contacts of an extension, best q first.
    pub fn lookup(&self, ext: &Extension) -> Vec<Location> {
        let now = crate::clock::unix_ms();
        let map = self.locations.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Location> = map
            .get(ext.as_str())
            .map(|v| {
                v.iter()
                    .filter(|l| l.expires_at_ms > now)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|l| std::cmp::Reverse(q_value(l)));
        v
    }

    /// Every unexpired contact of every extension (the API's registration list), by extension.
    pub fn all_locations(&self) -> Vec<Location> {
        let now = crate::clock::unix_ms();
        let map = self.locations.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Location> = map
            .values()
            .flatten()
            .filter(|l| l.expires_at_ms > now)
            .cloned()
            .collect();
        v.sort_by(|a, b| (&a.ext, &a.contact).cmp(&(&b.ext, &b.contact)));
        v
    }

    /// The digest realm users' HA1 values are made for.
    pub fn realm(&self) -> &str {
        self.auth.realm()
    }

    /// Drops a cached user record so a change made through the API shows at once.
    pub fn forget_user(&self, ext: &Extension) {
        let mut cache = self.users.lock().unwrap_or_else(|e| e.into_inner());
        cache.remove(ext.as_str());
    }

    /// The extension record, if it exists (cached for [`USER_CACHE_TTL`]).
    pub async fn user(&self, ext: &Extension) -> Option<User> {
        self.user_named(ext.as_str()).await
    }

    /// [`Self::user`] by the name a request carries (a digest username, a To user).
    async fn user_named(&self, ext: &str) -> Option<User> {
        {
            let cache = self.users.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, user)) = cache.get(ext)
                && crate::clock::now().saturating_duration_since(*at) < USER_CACHE_TTL
            {
                return user.clone();
            }
        }
        let user = match self.store.get_user(ext).await {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(error = %e, "user lookup failed");
                return None;
            }
        };
        let mut cache = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= USER_CACHE_MAX {
            let now = crate::clock::now();
            cache.retain(|_, (at, _)| now.saturating_duration_since(*at) < USER_CACHE_TTL);
            if cache.len() >= USER_CACHE_MAX {
                cache.clear(); // a flood of unknown names: forget them all
            }
        }
        cache.insert(ext.to_owned(), (crate::clock::now(), user.clone()));
        user
    }

    /// Digest authentication of a request from `peer`. `proxy` selects 407/Proxy-Authorization
    /// (INVITE) over 401/Authorization (REGISTER).
    pub async fn authenticate(&self, req: &Request, peer: Peer, proxy: bool) -> AuthDecision {
        if self.is_trusted(peer.addr.ip()) {
            return AuthDecision::Allowed(None);
        }
        let ip = peer.addr.ip();
        if self.throttled(ip) {
            tracing::warn!(target: "security", source = %ip, method = %req.method,
                "request refused: too many failed authentications");
            return AuthDecision::Reply(response_with_tag(req, StatusCode::FORBIDDEN, &new_tag()));
        }
        let header = if proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        let creds = self.auth.select(req.headers.get_all(header));
        let Some(creds) = creds else {
            return AuthDecision::Reply(self.challenge(req, proxy, false));
        };
        let user = self.user_named(&creds.username).await;
        let known = user.is_some();
        let user = user.unwrap_or_else(|| self.decoy.clone());
        let now = crate::clock::unix_ms();
        let uri = req.uri.to_string();
        let outcome = self
            .auth
            .verify(&creds, req.method.as_str(), &uri, now, |alg| {
                Some(match alg {
                    crate::sip::auth::Algorithm::Md5 => user.ha1_md5.clone(),
                    crate::sip::auth::Algorithm::Sha256 => user.ha1_sha256.clone(),
                })
            });
        match outcome {
            AuthOutcome::Ok if known => {
                self.clear_failures(ip);
                AuthDecision::Allowed(Some(creds.username))
            }
            AuthOutcome::Stale if known => AuthDecision::Reply(self.challenge(req, proxy, true)),
            _ => {
                self.record_failure(ip, &creds.username);
                AuthDecision::Reply(self.challenge(req, proxy, false))
            }
        }
    }

    /// Handles a REGISTER (§10.3) and returns the response to send.
    pub async fn handle_register(&self, req: &Request, peer: Peer) -> Response {
        let to = match req.headers.to() {
            Ok(to) => to,
            Err(_) => return bad_request(req, "bad To header"),
        };
        // RFC 4475 §3.3.4: the address-of-record must be a SIP or SIPS URI.
        let Some(aor) = to.uri.as_sip() else {
            return bad_request(req, "To must be a SIP or SIPS URI");
        };
        let Some(ext) = aor.user_unescaped() else {
            return bad_request(req, "To has no user part");
        };
        match self.authenticate(req, peer, false).await {
            AuthDecision::Reply(r) => return r,
            AuthDecision::Allowed(Some(user)) if user != ext => {
                tracing::warn!(target: "security", source = %peer.addr.ip(), user, aor = ext,
                    "REGISTER for another extension refused");
                return response_with_tag(req, StatusCode::FORBIDDEN, &new_tag());
            }
            AuthDecision::Allowed(_) => {}
        }
        if self.user_named(&ext).await.is_none() {
            // Only reachable from a trusted source: there is no such extension.
            return response_with_tag(req, StatusCode::NOT_FOUND, &new_tag());
        }
        match self.apply(req, &ext, peer) {
            Ok(current) => {
                let mut resp = response_with_tag(req, StatusCode::OK, &new_tag());
                let now = crate::clock::unix_ms();
                for l in &current {
                    let secs = ((l.expires_at_ms - now).max(0) + 999) / 1000;
                    resp.headers
                        .push("Contact", format!("<{}>;expires={secs}", l.contact));
                }
                resp
            }
            Err(resp) => *resp,
        }
    }

    /// Removes expired bindings from memory and the database.
    pub fn prune(&self) {
        let now = crate::clock::unix_ms();
        let mut map = self.locations.write().unwrap_or_else(|e| e.into_inner());
        let mut expired = Vec::new();
        map.retain(|_, v| {
            v.retain(|l| {
                let live = l.expires_at_ms > now;
                if !live {
                    expired.push(l.clone());
                }
                live
            });
            !v.is_empty()
        });
        let count: usize = map.values().map(Vec::len).sum();
        drop(map);
        metrics::gauge!("switchboard_registrations").set(count as f64);
        self.writer.send(StoreCmd::PruneExpired { now_ms: now });
        for l in &expired {
            self.event(Event::RegistrationExpired, l, now);
        }
    }

    fn apply(&self, req: &Request, ext: &str, peer: Peer) -> Result<Vec<Location>, Box<Response>> {
        let contacts = req
            .headers
            .contacts()
            .map_err(|_| Box::new(bad_request(req, "bad Contact")))?;
        let expires_hdr = req
            .headers
            .expires()
            .map_err(|_| Box::new(bad_request(req, "bad Expires")))?;
        let call_id = req.headers.call_id().unwrap_or_default().to_owned();
        let cseq = req.headers.cseq().map(|c| c.seq).unwrap_or(0);
        let user_agent = req.headers.get("User-Agent").map(str::to_owned);
        let now = crate::clock::unix_ms();
        let mut map = self.locations.write().unwrap_or_else(|e| e.into_inner());
        if contacts.iter().any(|c| matches!(c, Contact::Star)) {
            if contacts.len() != 1 || expires_hdr != Some(0) {
                return Err(Box::new(bad_request(
                    req,
                    "Contact: * needs Expires: 0 and no other Contact",
                )));
            }
            let removed = map.remove(ext).unwrap_or_default();
            self.writer.send(StoreCmd::RemoveAllBindings {
                ext: ext.to_owned(),
            });
            for l in &removed {
                self.event(Event::RegistrationRemoved, l, now);
            }
        } else {
            // Check all before changing anything (§10.3 step 7 is atomic).
            let mut updates = Vec::new();
            for c in &contacts {
                let Contact::Addr(na) = c else { continue };
                let expires = match na.param("expires") {
                    Some(Some(v)) => v
                        .trim()
                        .parse::<u64>()
                        .map(|n| n.min(u32::MAX as u64) as u32)
                        .ok(),
                    _ => None,
                }
                .or(expires_hdr)
                .unwrap_or(self.default_expires);
                if expires != 0 && expires < self.min_expires {
                    let mut resp =
                        response_with_tag(req, StatusCode::INTERVAL_TOO_BRIEF, &new_tag());
                    resp.headers
                        .push("Min-Expires", self.min_expires.to_string());
                    return Err(Box::new(resp));
                }
                updates.push((na.clone(), expires.min(self.max_expires)));
            }
            let entry = map.entry(ext.to_owned()).or_default();
            let new_contacts = updates
                .iter()
                .filter(|(na, exp)| {
                    *exp != 0 && !entry.iter().any(|l| same_contact(&l.uri, &na.uri))
                })
                .count();
            if entry.len() + new_contacts > MAX_CONTACTS {
                let mut resp = response_with_tag(req, StatusCode::FORBIDDEN, &new_tag());
                resp.reason = format!("Too Many Contacts (at most {MAX_CONTACTS})");
                return Err(Box::new(resp));
            }
            for (na, expires) in updates {
                let contact = na.uri.to_string();
                let existing = entry.iter().position(|l| same_contact(&l.uri, &na.uri));
                if let Some(i) = existing
                    && entry[i].call_id == call_id
                    && entry[i].cseq >= cseq
                {
                    continue; // out of order (§10.3 step 7): keep the newer binding
                }
                if expires == 0 {
                    if let Some(i) = existing {
                        let old = entry.remove(i);
                        self.writer.send(StoreCmd::RemoveBinding {
                            ext: ext.to_owned(),
                            contact_uri: old.contact.clone(),
                        });
                        self.event(Event::RegistrationRemoved, &old, now);
                    }
                    continue;
                }
                let loc = Location {
                    ext: Extension::new(ext),
                    contact,
                    uri: na.uri.clone(),
                    source: peer,
                    expires_at_ms: now + i64::from(expires) * 1000,
                    call_id: call_id.clone(),
                    cseq,
                    q: na.param("q").flatten().and_then(parse_q),
                    user_agent: user_agent.clone(),
                };
                self.writer
                    .send(StoreCmd::UpsertBinding(binding_from_location(&loc, now)));
                match existing {
                    Some(i) => entry[i] = loc,
                    None => {
                        self.event(Event::RegistrationAdded, &loc, now);
                        entry.push(loc);
                    }
                }
            }
            if entry.is_empty() {
                map.remove(ext);
            }
        }
        let current = map.get(ext).cloned().unwrap_or_default();
        let count: usize = map.values().map(Vec::len).sum();
        metrics::gauge!("switchboard_registrations").set(count as f64);
        Ok(current)
    }

    /// Appends a `registration.*` event for `l` to the event log.
    fn event(&self, kind: fn(Registration) -> Event, l: &Location, now_ms: i64) {
        let registration = Registration {
            ext: l.ext.to_string(),
            contact: l.contact.clone(),
            transport: l.source.transport.as_str().to_ascii_lowercase(),
            source: l.source.addr.to_string(),
        };
        self.writer
            .send(StoreCmd::event(now_ms, None, None, kind(registration)));
    }

    fn challenge(&self, req: &Request, proxy: bool, stale: bool) -> Response {
        let (status, header) = if proxy {
            (StatusCode::PROXY_AUTH_REQUIRED, "Proxy-Authenticate")
        } else {
            (StatusCode::UNAUTHORIZED, "WWW-Authenticate")
        };
        let mut resp = response_with_tag(req, status, &new_tag());
        for value in self.auth.challenge(crate::clock::unix_ms(), stale) {
            resp.headers.push(header, value);
        }
        resp
    }

    fn throttled(&self, ip: IpAddr) -> bool {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&ip).is_some_and(|(n, since)| {
            *n >= self.failures_before_throttle
                && crate::clock::now().saturating_duration_since(*since) < self.throttle_window
        })
    }

    fn record_failure(&self, ip: IpAddr, username: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.entry(ip).or_insert((0, crate::clock::now()));
        if crate::clock::now().saturating_duration_since(e.1) >= self.throttle_window {
            *e = (0, crate::clock::now());
        }
        e.0 += 1;
        tracing::warn!(target: "security", source = %ip, username, failures = e.0,
            "authentication failed");
        if map.len() > 100_000 {
            let window = self.throttle_window;
            let now = crate::clock::now();
            map.retain(|_, (_, since)| now.saturating_duration_since(*since) < window);
        }
    }

    fn clear_failures(&self, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&ip);
    }
}

fn bad_request(req: &Request, reason: &str) -> Response {
    let mut resp = response_with_tag(req, StatusCode::BAD_REQUEST, &new_tag());
    resp.reason = reason.to_owned();
    resp
}

fn q_value(l: &Location) -> u16 {
    l.q.unwrap_or(1000)
}

/// A qvalue ("0.5", "1", "0.125") in thousandths.
fn parse_q(s: &str) -> Option<u16> {
    let v: f64 = s.trim().parse().ok()?;
    (0.0..=1.0)
        .contains(&v)
        .then(|| (v * 1000.0).round() as u16)
}

/// URI equality for bindings (§19.1.4, simplified: scheme, user, host, port, transport).
fn same_contact(a: &Uri, b: &Uri) -> bool {
    match (a.as_sip(), b.as_sip()) {
        (Some(a), Some(b)) => {
            a.secure == b.secure
                && a.user_unescaped() == b.user_unescaped()
                && a.host == b.host
                && a.port == b.port
                && a.param("transport") == b.param("transport")
        }
        _ => a == b,
    }
}

fn binding_from_location(l: &Location, now_ms: i64) -> Binding {
    Binding {
        ext: l.ext.to_string(),
        contact_uri: l.contact.clone(),
        transport: l.source.transport.as_str().to_owned(),
        source_addr: l.source.addr,
        call_id: l.call_id.clone(),
        cseq: l.cseq,
        expires_at_ms: l.expires_at_ms,
        user_agent: l.user_agent.clone(),
        q: l.q,
        updated_ms: now_ms,
    }
}

/// The location a stored binding stands for; `None` (logged) when its transport or Contact URI
/// no longer reads.
fn location_from_binding(b: &Binding) -> Option<Location> {
    let Some(transport) = Transport::from_token(&b.transport) else {
        tracing::warn!(ext = %b.ext, transport = %b.transport, "skipping binding with an unknown transport");
        return None;
    };
    Some(Location {
        ext: Extension::new(b.ext.as_str()),
        contact: b.contact_uri.clone(),
        uri: parse_uri(&b.contact_uri).ok()?,
        source: Peer {
            transport,
            addr: b.source_addr,
        },
        expires_at_ms: b.expires_at_ms,
        call_id: b.call_id.clone(),
        cseq: b.cseq,
        q: b.q,
        user_agent: b.user_agent.clone(),
    })
}

impl NameAddr {
    /// The user part of a SIP URI, unescaped.
    pub fn sip_user(&self) -> Option<String> {
        self.uri.as_sip().and_then(|u| u.user_unescaped())
    }
}
