//! Digest authentication for SIP (PURE).
//!
//! Owns the server side of HTTP digest as SIP uses it:
//!
//! * challenges: `WWW-Authenticate` / `Proxy-Authenticate` values (RFC 3261 §22.1, §22.4,
//!   §20.44; RFC 7616 §3.3), one per algorithm, SHA-256 before MD5 (RFC 8760 §2.4), with
//!   `qop="auth"`, `opaque`, and `stale=true` when asked;
//! * stateless nonces: hex of (timestamp ms, 8 random bytes, truncated HMAC-SHA256 over both and
//!   the realm, keyed by a server secret), so any node sharing the secret verifies them and their
//!   age is known without a nonce table (RFC 7616 §3.3 "nonce" leaves the format to the server);
//! * parsing `Authorization` / `Proxy-Authorization` values (RFC 3261 §25.1 `credentials`,
//!   auth-param lists with quoted strings and `\` escapes). Schemes other than `Digest` are
//!   ignored, as RFC 4475 §3.3.7 requires;
//! * verification against a stored HA1 (RFC 7616 §3.4.1–§3.4.3): with `qop=auth` (`nc`,
//!   `cnonce`) and without qop (RFC 2069 compatibility, RFC 3261 §22.4), for MD5, SHA-256 and
//!   their `-sess` variants. The `uri` parameter must match the Request-URI (RFC 3261 §22.4,
//!   RFC 7616 §3.4.6). A correct response over an expired nonce is [`AuthOutcome::Stale`]
//!   (RFC 7616 §3.3 `stale`). `qop=auth-int` and `userhash` are not supported. Nonce-count
//!   replay tracking is not done here (it would need state).
//!
//! Nothing here reads a clock: `now_ms` (Unix milliseconds) is passed in. [`ha1`] is what the
//! store keeps instead of a password.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};

/// A digest algorithm (RFC 7616 §3.3 `algorithm`, RFC 8760 for SIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5` (RFC 2617, kept for old clients).
    Md5,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
}

/// Parsed digest credentials from an `Authorization` or `Proxy-Authorization` value
/// (RFC 3261 §25.1 `digest-response`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `username` (the SIP user, e.g. the extension).
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce` echoed from the challenge.
    pub nonce: String,
    /// `uri` (digest-uri): the Request-URI text the client hashed.
    pub uri: String,
    /// `response`: lowercase or uppercase hex digest.
    pub response: String,
    /// `algorithm` (defaults to MD5 when absent, RFC 7616 §3.4).
    pub algorithm: Algorithm,
    /// True for the `-sess` variants (`MD5-sess`, `SHA-256-sess`).
    pub sess: bool,
    /// `qop` as sent (`auth`, `auth-int`), absent for RFC 2069 style.
    pub qop: Option<String>,
    /// `nc` nonce count (8 hex digits) when qop is present.
    pub nc: Option<String>,
    /// `cnonce` when qop is present.
    pub cnonce: Option<String>,
    /// `opaque` echoed from the challenge.
    pub opaque: Option<String>,
    /// `userhash=true` was sent (RFC 7616 §3.4.4); not supported by [`Authenticator::verify`].
    pub userhash: bool,
}

/// Result of [`Authenticator::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Credentials are correct and the nonce is fresh.
    Ok,
    /// Credentials are correct but the nonce expired: challenge again with `stale=true`.
    Stale,
    /// Authentication failed; challenge again (without `stale`), or answer 403.
    Failed(AuthFailure),
}

/// Why verification failed (for logs; never sent to the peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// The credentials name another realm.
    #[error("realm does not match")]
    RealmMismatch,
    /// The nonce was not made by us (bad format or MAC), or is from the future.
    #[error("nonce is not ours")]
    BadNonce,
    /// The `uri` parameter does not match the Request-URI.
    #[error("digest uri does not match the Request-URI")]
    UriMismatch,
    /// `qop` other than `auth`, or `qop` without `nc`/`cnonce`.
    #[error("unsupported or incomplete qop")]
    BadQop,
    /// `userhash=true` is not supported.
    #[error("userhash is not supported")]
    UserhashUnsupported,
    /// `opaque` differs from the one we sent.
    #[error("opaque does not match")]
    OpaqueMismatch,
    /// No HA1 is known for this user and algorithm.
    #[error("unknown user")]
    UnknownUser,
    /// The response digest is wrong (wrong password, or tampered parameters).
    #[error("wrong response")]
    WrongResponse,
}

/// How the digest `uri` parameter is checked against the Request-URI (RFC 3261 §22.4).
///
/// What clients send: baresip (libre) and Linphone put the Request-URI text in `uri`. SIPp's
/// `[authentication]` does not: it sends `sip:<remote_ip>:<remote_port>` (or `sip:` + the
/// `-auth_uri` option) whatever the Request-URI is, so SIPp scenarios pass [`UriCheck::Exact`]
/// only with a Request-URI of exactly `sip:[remote_ip]:[remote_port]` or with `-auth_uri`, and
/// pass [`UriCheck::SameHost`] whenever the Request-URI's host and port are the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UriCheck {
    /// The `uri` must be the Request-URI text (compared ignoring ASCII case). The default.
    #[default]
    Exact,
    /// The `uri` must be the Request-URI text, or a SIP/SIPS URI naming the same host and port
    /// (user part and parameters ignored; absent port = 5060, or 5061 for `sips`).
    SameHost,
    /// The `uri` is not compared (it is still part of the hash).
    Off,
}

/// Issues challenges and verifies credentials for one realm.
#[derive(Clone)]
pub struct Authenticator {
    realm: String,
    secret: Vec<u8>,
    nonce_ttl_ms: i64,
    opaque: String,
    algorithms: Vec<Algorithm>,
    uri_check: UriCheck,
}

/// Nonces whose timestamp is this far in the future are still accepted (clock skew between
/// nodes sharing the secret).
const NONCE_FUTURE_SKEW_MS: i64 = 60_000;
/// Bytes of HMAC-SHA256 kept in the nonce.
const NONCE_MAC_LEN: usize = 16;
/// Timestamp (8) + random (8) + MAC.
const NONCE_LEN: usize = 8 + 8 + NONCE_MAC_LEN;

impl Algorithm {
    /// The token used in `algorithm=` (RFC 7616 §3.3).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Hex digest of `data` with this algorithm (lowercase).
    pub fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data)),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data)),
        }
    }

    /// Parses an `algorithm` token; returns the algorithm and whether it is a `-sess` variant.
    pub fn parse(token: &str) -> Option<(Algorithm, bool)> {
        let t = token.to_ascii_uppercase();
        match t.as_str() {
            "MD5" => Some((Algorithm::Md5, false)),
            "MD5-SESS" => Some((Algorithm::Md5, true)),
            "SHA-256" => Some((Algorithm::Sha256, false)),
            "SHA-256-SESS" => Some((Algorithm::Sha256, true)),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// HA1 = H(username ":" realm ":" password) in lowercase hex (RFC 7616 §3.4.2). This is what
/// the store keeps per algorithm instead of the password.
pub fn ha1(algorithm: Algorithm, user: &str, realm: &str, password: &str) -> String {
    algorithm.hash_hex(format!("{user}:{realm}:{password}").as_bytes())
}

/// What the store keeps for `user` instead of `password`: both HA1 values under `realm`.
pub fn user_secrets(user: &str, realm: &str, password: &str) -> crate::store::UserSecrets {
    crate::store::UserSecrets {
        ha1_md5: ha1(Algorithm::Md5, user, realm, password),
        ha1_sha256: ha1(Algorithm::Sha256, user, realm, password),
        realm: realm.to_owned(),
    }
}

/// The response a client holding `ha1` must send for these credentials (RFC 7616 §3.4.1;
/// RFC 2069 form when `qop` is absent). `ha1` is the plain HA1; the `-sess` transform is
/// applied here when `creds.sess` is set. Returns lowercase hex.
pub fn expected_response(creds: &Credentials, method: &str, ha1: &str) -> String {
    let alg = creds.algorithm;
    let ha1 = if creds.sess {
        let cnonce = creds.cnonce.as_deref().unwrap_or("");
        alg.hash_hex(format!("{}:{}:{}", ha1.to_ascii_lowercase(), creds.nonce, cnonce).as_bytes())
    } else {
        ha1.to_ascii_lowercase()
    };
    let ha2 = alg.hash_hex(format!("{method}:{}", creds.uri).as_bytes());
    match &creds.qop {
        Some(qop) => alg.hash_hex(
            format!(
                "{ha1}:{}:{}:{}:{qop}:{ha2}",
                creds.nonce,
                creds.nc.as_deref().unwrap_or(""),
                creds.cnonce.as_deref().unwrap_or("")
            )
            .as_bytes(),
        ),
        None => alg.hash_hex(format!("{ha1}:{}:{ha2}", creds.nonce).as_bytes()),
    }
}

/// Parses one `Authorization` / `Proxy-Authorization` header value. Returns `None` for any
/// scheme other than `Digest` (RFC 4475 §3.3.7: treated as no credentials), for malformed
/// values, for missing required parameters, duplicated parameters, or an unknown algorithm.
pub fn credentials(header_value: &str) -> Option<Credentials> {
    let s = header_value.trim_start_matches(is_lws);
    let scheme_end = s.find(is_lws).unwrap_or(s.len());
    let (scheme, rest) = s.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let params = parse_auth_params(rest)?;

    let mut username = None;
    let mut realm = None;
    let mut nonce = None;
    let mut uri = None;
    let mut response = None;
    let mut algorithm = None;
    let mut qop = None;
    let mut nc = None;
    let mut cnonce = None;
    let mut opaque = None;
    let mut userhash = None;
    for (name, value) in params {
        let slot = match name.to_ascii_lowercase().as_str() {
            "username" => &mut username,
            "realm" => &mut realm,
            "nonce" => &mut nonce,
            "uri" => &mut uri,
            "response" => &mut response,
            "algorithm" => &mut algorithm,
            "qop" => &mut qop,
            "nc" => &mut nc,
            "cnonce" => &mut cnonce,
            "opaque" => &mut opaque,
            "userhash" => &mut userhash,
            _ => continue, // auth-param extensions are ignored
        };
        if slot.is_some() {
            return None; // duplicated parameter: ambiguous, refuse
        }
        *slot = Some(value);
    }
    let (algorithm, sess) = match algorithm {
        Some(a) => Algorithm::parse(&a)?,
        None => (Algorithm::Md5, false),
    };
    Some(Credentials {
        username: username?,
        realm: realm?,
        nonce: nonce?,
        uri: uri?,
        response: response?,
        algorithm,
        sess,
        qop,
        nc,
        cnonce,
        opaque,
        userhash: userhash.is_some_and(|u| u.eq_ignore_ascii_case("true")),
    })
}

impl Authenticator {
    /// A new authenticator for `realm`. `secret` keys the nonce MAC (share it between nodes);
    /// nonces older than `nonce_ttl` give [`AuthOutcome::Stale`]. Challenges offer SHA-256 then
    /// MD5 (RFC 8760 §2.4).
    ///
    /// Interop: baresip 1.0 (libre 1.1) fails registration with ENOSYS when *any* challenge
    /// offers SHA-256, and SIPp 3.6.1 aborts when the first one does. For those clients use
    /// `.with_algorithms(&[Algorithm::Md5])`. Newer libre answers every challenge, sending one
    /// `Authorization` per algorithm: pick one with [`Authenticator::select`].
    pub fn new(realm: impl Into<String>, secret: impl AsRef<[u8]>, nonce_ttl: Duration) -> Self {
        let realm = realm.into();
        let secret = secret.as_ref().to_vec();
        let opaque = {
            let mut mac = new_mac(&secret);
            mac.update(b"opaque\0");
            mac.update(realm.as_bytes());
            hex::encode(&mac.finalize().into_bytes()[..8])
        };
        Authenticator {
            realm,
            secret,
            nonce_ttl_ms: i64::try_from(nonce_ttl.as_millis()).unwrap_or(i64::MAX),
            opaque,
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            uri_check: UriCheck::Exact,
        }
    }

    /// Restricts (and orders) the algorithms offered in challenges. An empty list keeps the
    /// default (SHA-256, MD5).
    pub fn with_algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        if !algorithms.is_empty() {
            self.algorithms = algorithms.to_vec();
        }
        self
    }

    /// Sets how the digest `uri` is compared with the Request-URI (default [`UriCheck::Exact`]).
    pub fn with_uri_check(mut self, check: UriCheck) -> Self {
        self.uri_check = check;
        self
    }

    /// The realm challenged for.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Challenge header values (for `WWW-Authenticate` in a 401, or `Proxy-Authenticate` in a
    /// 407), one per algorithm, all sharing one fresh nonce. `stale` adds `stale=true`.
    pub fn challenge(&self, now_ms: i64, stale: bool) -> Vec<String> {
        let salt: [u8; 8] = rand::random();
        self.challenge_with_salt(now_ms, stale, salt)
    }

    /// [`Authenticator::challenge`] with the nonce's random part given (deterministic tests).
    pub fn challenge_with_salt(&self, now_ms: i64, stale: bool, salt: [u8; 8]) -> Vec<String> {
        let nonce = self.make_nonce(now_ms, salt);
        self.algorithms
            .iter()
            .map(|alg| {
                let mut v = format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", opaque=\"{}\", algorithm={alg}, qop=\"auth\"",
                    escape_quoted(&self.realm),
                    self.opaque
                );
                if stale {
                    v.push_str(", stale=true");
                }
                v
            })
            .collect()
    }

    /// Picks, among several `Authorization` (or `Proxy-Authorization`) values, the Digest
    /// credentials for this realm, preferring SHA-256 over MD5.
    pub fn select<'a>(
        &self,
        header_values: impl IntoIterator<Item = &'a str>,
    ) -> Option<Credentials> {
        header_values
            .into_iter()
            .filter_map(credentials)
            .filter(|c| c.realm == self.realm)
            .min_by_key(|c| match c.algorithm {
                Algorithm::Sha256 => 0,
                Algorithm::Md5 => 1,
            })
    }

    /// Verifies `creds` for a request with `method` and `request_uri` (the Request-URI text as
    /// received). `ha1_for` returns the stored HA1 of `creds.username` for an algorithm, or
    /// `None` if the user is unknown.
    pub fn verify(
        &self,
        creds: &Credentials,
        method: &str,
        request_uri: &str,
        now_ms: i64,
        ha1_for: impl FnOnce(Algorithm) -> Option<String>,
    ) -> AuthOutcome {
        match self.check(creds, method, request_uri, now_ms, ha1_for) {
            Ok(fresh) if fresh => AuthOutcome::Ok,
            Ok(_) => AuthOutcome::Stale,
            Err(f) => AuthOutcome::Failed(f),
        }
    }

    /// Ok(true) fresh and correct, Ok(false) correct but stale.
    fn check(
        &self,
        creds: &Credentials,
        method: &str,
        request_uri: &str,
        now_ms: i64,
        ha1_for: impl FnOnce(Algorithm) -> Option<String>,
    ) -> Result<bool, AuthFailure> {
        if creds.realm != self.realm {
            return Err(AuthFailure::RealmMismatch);
        }
        if creds.userhash {
            return Err(AuthFailure::UserhashUnsupported);
        }
        let issued_ms = self.check_nonce(&creds.nonce)?;
        if issued_ms > now_ms.saturating_add(NONCE_FUTURE_SKEW_MS) {
            return Err(AuthFailure::BadNonce);
        }
        if !uri_matches(self.uri_check, &creds.uri, request_uri) {
            return Err(AuthFailure::UriMismatch);
        }
        match creds.qop.as_deref() {
            None if !creds.sess => {}
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let nc_ok = creds
                    .nc
                    .as_deref()
                    .is_some_and(|nc| nc.len() == 8 && nc.bytes().all(|b| b.is_ascii_hexdigit()));
                if !nc_ok || creds.cnonce.as_deref().is_none_or(str::is_empty) {
                    return Err(AuthFailure::BadQop);
                }
            }
            _ => return Err(AuthFailure::BadQop),
        }
        if let Some(op) = &creds.opaque
            && op != &self.opaque
        {
            return Err(AuthFailure::OpaqueMismatch);
        }
        let ha1 = ha1_for(creds.algorithm).ok_or(AuthFailure::UnknownUser)?;
        let expected = expected_response(creds, method, &ha1);
        if !ct_eq_ignore_case(expected.as_bytes(), creds.response.as_bytes()) {
            return Err(AuthFailure::WrongResponse);
        }
        Ok(now_ms.saturating_sub(issued_ms) <= self.nonce_ttl_ms)
    }

    fn make_nonce(&self, now_ms: i64, salt: [u8; 8]) -> String {
        let mut raw = [0u8; NONCE_LEN];
        raw[..8].copy_from_slice(&now_ms.to_be_bytes());
        raw[8..16].copy_from_slice(&salt);
        let tag = self.nonce_mac(&raw[..16]);
        raw[16..].copy_from_slice(&tag[..NONCE_MAC_LEN]);
        hex::encode(raw)
    }

    /// Returns the nonce's timestamp if the MAC is ours.
    fn check_nonce(&self, nonce: &str) -> Result<i64, AuthFailure> {
        let raw = hex::decode(nonce).map_err(|_| AuthFailure::BadNonce)?;
        if raw.len() != NONCE_LEN {
            return Err(AuthFailure::BadNonce);
        }
        let mut mac = new_mac(&self.secret);
        mac.update(b"nonce\0");
        mac.update(self.realm.as_bytes());
        mac.update(b"\0");
        mac.update(&raw[..16]);
        mac.verify_truncated_left(&raw[16..])
            .map_err(|_| AuthFailure::BadNonce)?;
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&raw[..8]);
        Ok(i64::from_be_bytes(ts))
    }

    fn nonce_mac(&self, body: &[u8]) -> Vec<u8> {
        let mut mac = new_mac(&self.secret);
        mac.update(b"nonce\0");
        mac.update(self.realm.as_bytes());
        mac.update(b"\0");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("realm", &self.realm)
            .field("secret", &"<redacted>")
            .field("nonce_ttl_ms", &self.nonce_ttl_ms)
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

fn new_mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length")
}

/// RFC 3261 §22.4: the digest `uri` must be the Request-URI; see [`UriCheck`] for what clients
/// actually send. Scheme and host are case-insensitive (RFC 3261 §19.1.4), so a case-only
/// difference is tolerated in every mode.
fn uri_matches(check: UriCheck, digest_uri: &str, request_uri: &str) -> bool {
    let (a, b) = (digest_uri.trim(), request_uri.trim());
    match check {
        UriCheck::Off => true,
        UriCheck::Exact => a.eq_ignore_ascii_case(b),
        UriCheck::SameHost => {
            a.eq_ignore_ascii_case(b)
                || matches!((sip_host_port(a), sip_host_port(b)), (Some(x), Some(y)) if x == y)
        }
    }
}

/// (scheme, host, port) of a `sip:`/`sips:` URI, lower-cased, default port filled in. `None`
/// for other schemes or unparsable text.
fn sip_host_port(uri: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = uri.split_once(':')?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "sip" => 5060,
        "sips" => 5061,
        _ => return None,
    };
    // userinfo may contain ';' and '?' (RFC 3261 §25.1 user-unreserved) but never '@'.
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = hostport.split([';', '?']).next()?;
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    Some((scheme, host.to_ascii_lowercase(), port))
}

fn ct_eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| {
        acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())
    }) == 0
}

fn is_lws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_token_char(c: char) -> bool {
    // RFC 3261 §25.1 token
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

fn escape_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Parses `auth-param *(COMMA auth-param)` (RFC 3261 §25.1): `token EQUAL (token /
/// quoted-string)`, unescaping quoted-pairs. Empty list elements are tolerated (RFC 7230 §7).
fn parse_auth_params(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    let skip_ws = |it: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
        while it.peek().is_some_and(|&(_, c)| is_lws(c)) {
            it.next();
        }
    };
    loop {
        // skip separators
        while chars.peek().is_some_and(|&(_, c)| is_lws(c) || c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(&(_, c)) = chars.peek() {
            if !is_token_char(c) {
                break;
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() {
            return None;
        }
        skip_ws(&mut chars);
        if chars.next().map(|(_, c)| c) != Some('=') {
            return None;
        }
        skip_ws(&mut chars);
        let mut value = String::new();
        if chars.peek().is_some_and(|&(_, c)| c == '"') {
            chars.next();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => {
                        let (_, esc) = chars.next()?;
                        if esc == '\r' || esc == '\n' {
                            return None;
                        }
                        value.push(esc);
                    }
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&(_, c)) = chars.peek() {
                if !is_token_char(c) {
                    break;
                }
                value.push(c);
                chars.next();
            }
            if value.is_empty() {
                return None;
            }
        }
        skip_ws(&mut chars);
        match chars.peek() {
            None => {}
            Some(&(_, ',')) => {}
            Some(_) => return None,
        }
        out.push((name, value));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret-0123456789";
    const TTL: Duration = Duration::from_secs(300);
    const T0: i64 = 1_700_000_000_000;

    fn auth() -> Authenticator {
        Authenticator::new("example.com", SECRET, TTL)
    }

    fn param<'a>(challenge: &'a str, name: &str) -> &'a str {
        let key = format!("{name}=");
        let start = challenge.find(&key).expect("param present") + key.len();
        let rest = &challenge[start..];
        if let Some(r) = rest.strip_prefix('"') {
            &r[..r.find('"').expect("closing quote")]
        } else {
            &rest[..rest.find(',').unwrap_or(rest.len())]
        }
    }

    /// What a UA such as baresip sends back for a challenge (qop=auth).
    fn answer(
        challenge: &str,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        qop: bool,
    ) -> String {
        let realm = param(challenge, "realm");
        let nonce = param(challenge, "nonce");
        let opaque = param(challenge, "opaque");
        let alg_token = param(challenge, "algorithm");
        let (alg, _) = Algorithm::parse(alg_token).expect("known algorithm");
        let mut creds = Credentials {
            username: user.into(),
            realm: realm.into(),
            nonce: nonce.into(),
            uri: uri.into(),
            response: String::new(),
            algorithm: alg,
            sess: false,
            qop: qop.then(|| "auth".into()),
            nc: qop.then(|| "00000001".into()),
            cnonce: qop.then(|| "0a4f113b".into()),
            opaque: Some(opaque.into()),
            userhash: false,
        };
        let h = ha1(alg, user, realm, password);
        creds.response = expected_response(&creds, method, &h);
        let mut v = format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{}\", algorithm={alg_token}, opaque=\"{opaque}\"",
            creds.response
        );
        if qop {
            v.push_str(", cnonce=\"0a4f113b\", qop=auth, nc=00000001");
        }
        v
    }

    /// The store's answer for a user that exists with `password`.
    fn store_ha1(user: &str, password: &str) -> impl Fn(Algorithm) -> Option<String> {
        let (user, password) = (user.to_string(), password.to_string());
        move |alg| Some(ha1(alg, &user, "example.com", &password))
    }

    #[test]
    fn ha1_matches_rfc7616_example_inputs() {
        // RFC 7616 §3.9.1: Mufasa / http-auth@example.org / "Circle of Life"
        assert_eq!(
            ha1(
                Algorithm::Md5,
                "Mufasa",
                "http-auth@example.org",
                "Circle of Life"
            ),
            hex::encode(Md5::digest(b"Mufasa:http-auth@example.org:Circle of Life"))
        );
        assert_eq!(
            ha1(
                Algorithm::Md5,
                "Mufasa",
                "http-auth@example.org",
                "Circle of Life"
            )
            .len(),
            32
        );
        assert_eq!(
            ha1(
                Algorithm::Sha256,
                "Mufasa",
                "http-auth@example.org",
                "Circle of Life"
            )
            .len(),
            64
        );
    }

    #[test]
    fn rfc7616_sha256_example_response_is_reproduced() {
        let v = r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
        let c = credentials(v).expect("parses");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.uri, "/dir/index.html");
        let h = ha1(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        assert_eq!(expected_response(&c, "GET", &h), c.response);
    }

    #[test]
    fn rfc7616_md5_example_response_is_reproduced() {
        let v = r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=MD5, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="8ca523f5e9506fed4657c9700eebdbec", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
        let c = credentials(v).expect("parses");
        assert_eq!(c.algorithm, Algorithm::Md5);
        let h = ha1(
            Algorithm::Md5,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        assert_eq!(
            expected_response(&c, "GET", &h),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
    }

    #[test]
    fn rfc2069_response_without_qop_matches_computed_sip_example() {
        // Computed by hand: HA1 = MD5("bob:biloxi.com:zanzibar"), HA2 = MD5("REGISTER:sip:biloxi.com"),
        // response = MD5(HA1 ":" nonce ":" HA2).
        let ha1_hex = hex::encode(Md5::digest(b"bob:biloxi.com:zanzibar"));
        let ha2 = hex::encode(Md5::digest(b"REGISTER:sip:biloxi.com"));
        let want = hex::encode(Md5::digest(format!(
            "{ha1_hex}:dcd98b7102dd2f0e8b11d0f600bfb0c093:{ha2}"
        )));
        let v = format!(
            "Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"sip:biloxi.com\", response=\"{want}\""
        );
        let c = credentials(&v).expect("parses");
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert_eq!(c.qop, None);
        assert_eq!(
            expected_response(
                &c,
                "REGISTER",
                &ha1(Algorithm::Md5, "bob", "biloxi.com", "zanzibar")
            ),
            want
        );
    }

    #[test]
    fn challenge_offers_sha256_then_md5_with_one_nonce() {
        let ch = auth().challenge(T0, false);
        assert_eq!(ch.len(), 2);
        assert!(ch[0].starts_with("Digest realm=\"example.com\""));
        assert_eq!(param(&ch[0], "algorithm"), "SHA-256");
        assert_eq!(param(&ch[1], "algorithm"), "MD5");
        assert_eq!(param(&ch[0], "qop"), "auth");
        assert_eq!(param(&ch[0], "nonce"), param(&ch[1], "nonce"));
        assert!(!ch[0].contains("stale"));
        let md5_only = auth()
            .with_algorithms(&[Algorithm::Md5])
            .challenge(T0, false);
        assert_eq!(md5_only.len(), 1);
        assert_eq!(param(&md5_only[0], "algorithm"), "MD5");
        let stale = auth().challenge(T0, true);
        assert!(stale.iter().all(|c| c.ends_with(", stale=true")));
    }

    #[test]
    fn correct_sha256_and_md5_answers_with_qop_are_accepted() {
        let a = auth();
        for ch in a.challenge(T0, false) {
            let v = answer(&ch, "1001", "secret", "REGISTER", "sip:example.com", true);
            let c = credentials(&v).expect("parses");
            assert_eq!(
                a.verify(
                    &c,
                    "REGISTER",
                    "sip:example.com",
                    T0 + 1000,
                    store_ha1("1001", "secret")
                ),
                AuthOutcome::Ok,
                "{ch}"
            );
        }
    }

    #[test]
    fn correct_answer_without_qop_is_accepted() {
        let a = auth();
        let ch = &a.challenge(T0, false)[1];
        let v = answer(
            ch,
            "1001",
            "secret",
            "INVITE",
            "sip:2000@example.com",
            false,
        );
        let c = credentials(&v).expect("parses");
        assert_eq!(
            a.verify(
                &c,
                "INVITE",
                "sip:2000@example.com",
                T0,
                store_ha1("1001", "secret")
            ),
            AuthOutcome::Ok
        );
    }

    #[test]
    fn wrong_password_fails() {
        let a = auth();
        let ch = &a.challenge(T0, false)[0];
        let v = answer(ch, "1001", "guess", "REGISTER", "sip:example.com", true);
        let c = credentials(&v).expect("parses");
        assert_eq!(
            a.verify(
                &c,
                "REGISTER",
                "sip:example.com",
                T0,
                store_ha1("1001", "secret")
            ),
            AuthOutcome::Failed(AuthFailure::WrongResponse)
        );
    }

    #[test]
    fn expired_nonce_with_correct_credentials_is_stale() {
        let a = auth();
        let ch = &a.challenge(T0, false)[0];
        let v = answer(ch, "1001", "secret", "REGISTER", "sip:example.com", true);
        let c = credentials(&v).expect("parses");
        let later = T0 + TTL.as_millis() as i64 + 1;
        assert_eq!(
            a.verify(
                &c,
                "REGISTER",
                "sip:example.com",
                later,
                store_ha1("1001", "secret")
            ),
            AuthOutcome::Stale
        );
    }

    #[test]
    fn expired_nonce_with_wrong_password_is_failed_not_stale() {
        let a = auth();
        let ch = &a.challenge(T0, false)[0];
        let v = answer(ch, "1001", "guess", "REGISTER", "sip:example.com", true);
        let c = credentials(&v).expect("parses");
        let later = T0 + TTL.as_millis() as i64 + 1;
        assert_eq!(
            a.verify(
                &c,
                "REGISTER",
                "sip:example.com",
                later,
                store_ha1("1001", "secret")
            ),
            AuthOutcome::Failed(AuthFailure::WrongResponse)
        );
    }

    #[test]
    fn tampered_nonce_fails() {
        let a = auth();
        let ch = a.challenge(T0, false)[0].clone();
        let nonce = param(&ch, "nonce").to_string();
        // Move the timestamp forward by changing one hex digit; MAC no longer matches.
        let mut bytes = nonce.into_bytes();
        bytes[15] = if bytes[15] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(bytes).expect("ascii");
        let ch = ch.replace(param(&ch, "nonce"), &forged);
        let v = answer(&ch, "1001", "secret", "REGISTER", "sip:example.com", true);
        let c = credentials(&v).expect("parses");
        assert_eq!(
            a.verify(
                &c,
                "REGISTER",
                "sip:example.com",
                T0,
                store_ha1("1001", "secret")
            ),
            AuthOutcome::Failed(AuthFailure::BadNonce)
        );
    }

    #[test]
    fn nonce_from_another_secret_fails() {
        let other = Authenticator::new("example.com", b"other", TTL);
        let ch = &other.challenge(T0, false)[0];
        let v = answer(ch, "1001", "secret", "REGISTER", "sip:example.com", true);
        let c = credentials(&v).expect("parses");
        assert_eq!(
            auth().verify(
                &c,
                "REGISTER",
                "sip:example.com",
                T0,
                store_ha1("1001", "secret")
            ),
            AuthOutcome::Failed(AuthFailure::BadNonce)
        );
    }

    #[test]
    fn nonce_from_another_node_with_same_secret_verifies() {
        let node_a = auth();
        let node_b = auth();
        let ch = &node_a.challenge(T0, false)[0];
        let v = answer(ch, "1001", "secret", "REGISTER", "sip:example.com", true);
        let c = credentials(&v).expect("parses");
        assert_eq!(
            node_b.verify(
                &c,
                "REGISTER",
                "sip:example.com",
                T0,
                store_ha1("1001", "secret")
            ),
            AuthOutcome::Ok
        );
    }

    #[test]
    fn uri_other_than_request_uri_fails() {
        let a = auth();
        let ch = &a.challenge(T0, false)[0];
        let v = answer(ch, "1001", "secret", "INVITE", "sip:2000@example.com", true);
        let c = credentials(&v).expect("parses");
        assert_eq!(
            a.verify(
                &c,
                "INVITE",
                "sip:3000@example.com",
                T0,
                store_ha1("1001", "secret")
            ),
            AuthOutcome::Failed(AuthFailure::UriMismatch)
        );
    }

    /// Captured from SIPp 3.6.1 (`[authentication username=1001 password=secret]`) answering
    /// an MD5 challenge to `REGISTER sip:example.com` sent to 127.0.0.1:5090.
    const SIPP_3_6_1_AUTHORIZATION: &str = r#"Digest username="1001",realm="example.com",cnonce="6b8b4567",nc=00000001,qop=auth,uri="sip:127.0.0.1:5090",nonce="0000018c0b5a0000aabbccddeeff00112233445566778899aabbccddeeff0011",response="62743d82a6b76dd2c378470a262a74d5",algorithm=MD5,opaque="1234abcd""#;
    /// Captured from baresip 1.0.0 (libre 1.1.0), account `sip:1001@example.com;transport=udp`,
    /// password `secret`, answering the same challenge.
    const BARESIP_1_0_AUTHORIZATION: &str = r#"Digest username="1001", realm="example.com", nonce="0000018c0b5a0000aabbccddeeff00112233445566778899aabbccddeeff0011", uri="sip:example.com;transport=udp", response="d5b8bc072e8ce9542178e4ddb0274004", opaque="1234abcd", cnonce="8d144f4b1d34bb79", qop=auth, nc=00000001"#;

    #[test]
    fn captured_sipp_and_baresip_answers_hash_as_we_compute() {
        let h = ha1(Algorithm::Md5, "1001", "example.com", "secret");
        for v in [SIPP_3_6_1_AUTHORIZATION, BARESIP_1_0_AUTHORIZATION] {
            let c = credentials(v).expect("parses");
            assert_eq!(c.algorithm, Algorithm::Md5);
            assert_eq!(c.qop.as_deref(), Some("auth"));
            assert_eq!(expected_response(&c, "REGISTER", &h), c.response, "{v}");
        }
        // baresip hashes the Request-URI text; SIPp hashes sip:<remote_ip>:<remote_port>.
        let baresip = credentials(BARESIP_1_0_AUTHORIZATION).expect("parses");
        assert!(uri_matches(
            UriCheck::Exact,
            &baresip.uri,
            "sip:example.com;transport=udp"
        ));
        let sipp = credentials(SIPP_3_6_1_AUTHORIZATION).expect("parses");
        assert!(!uri_matches(
            UriCheck::SameHost,
            &sipp.uri,
            "sip:example.com"
        ));
        assert!(uri_matches(
            UriCheck::Exact,
            &sipp.uri,
            "sip:127.0.0.1:5090"
        ));
    }

    #[test]
    fn sipp_style_uri_passes_same_host_but_not_exact() {
        // SIPp answers with uri="sip:<remote_ip>:<remote_port>" whatever the Request-URI is.
        let exact = auth();
        let lenient = auth().with_uri_check(UriCheck::SameHost);
        let ch = &exact.challenge(T0, false)[1];
        let v = answer(ch, "1001", "secret", "INVITE", "sip:127.0.0.1:5060", true);
        let c = credentials(&v).expect("parses");
        let ok = |a: &Authenticator, ruri: &str| {
            a.verify(&c, "INVITE", ruri, T0, store_ha1("1001", "secret"))
        };
        assert_eq!(ok(&exact, "sip:127.0.0.1:5060"), AuthOutcome::Ok);
        assert_eq!(
            ok(&exact, "sip:2000@127.0.0.1:5060"),
            AuthOutcome::Failed(AuthFailure::UriMismatch)
        );
        assert_eq!(
            ok(&lenient, "sip:2000@127.0.0.1:5060;transport=udp"),
            AuthOutcome::Ok
        );
        assert_eq!(
            ok(&lenient, "sip:127.0.0.1"),
            AuthOutcome::Ok,
            "default port 5060"
        );
        assert_eq!(
            ok(&lenient, "sip:2000@127.0.0.2:5060"),
            AuthOutcome::Failed(AuthFailure::UriMismatch)
        );
        assert_eq!(
            ok(&lenient, "sips:127.0.0.1:5060"),
            AuthOutcome::Failed(AuthFailure::UriMismatch)
        );
        let off = auth().with_uri_check(UriCheck::Off);
        assert_eq!(ok(&off, "sip:anything@example.org"), AuthOutcome::Ok);
    }

    #[test]
    fn sip_host_port_handles_users_params_and_ipv6() {
        assert_eq!(
            sip_host_port("sip:a;b?c@Example.COM:5070;transport=tcp?x=y"),
            Some(("sip".into(), "example.com".into(), 5070))
        );
        assert_eq!(
            sip_host_port("SIPS:[2001:db8::1]"),
            Some(("sips".into(), "2001:db8::1".into(), 5061))
        );
        assert_eq!(sip_host_port("tel:+4930123"), None);
        assert_eq!(sip_host_port("sip:host:notaport"), None);
    }

    #[test]
    fn unknown_user_and_other_realm_fail() {
        let a = auth();
        let ch = &a.challenge(T0, false)[0];
        let v = answer(ch, "1002", "secret", "REGISTER", "sip:example.com", true);
        let c = credentials(&v).expect("parses");
        assert_eq!(
            a.verify(&c, "REGISTER", "sip:example.com", T0, |_| None),
            AuthOutcome::Failed(AuthFailure::UnknownUser)
        );
        let mut c2 = c.clone();
        c2.realm = "evil.com".into();
        assert_eq!(
            a.verify(
                &c2,
                "REGISTER",
                "sip:example.com",
                T0,
                store_ha1("1001", "secret")
            ),
            AuthOutcome::Failed(AuthFailure::RealmMismatch)
        );
    }

    #[test]
    fn qop_auth_int_is_refused() {
        let a = auth();
        let ch = &a.challenge(T0, false)[0];
        let v = answer(ch, "1001", "secret", "REGISTER", "sip:example.com", true)
            .replace("qop=auth", "qop=auth-int");
        let c = credentials(&v).expect("parses");
        assert_eq!(
            a.verify(
                &c,
                "REGISTER",
                "sip:example.com",
                T0,
                store_ha1("1001", "secret")
            ),
            AuthOutcome::Failed(AuthFailure::BadQop)
        );
    }

    #[test]
    fn unknown_scheme_is_ignored_as_no_credentials() {
        // RFC 4475 §3.3.7 (TC_REGAUT01_V)
        assert_eq!(credentials("NoOneKnowsThisScheme opaque-data=here"), None);
        assert_eq!(credentials("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="), None);
    }

    #[test]
    fn quoted_string_escapes_are_unescaped() {
        let v = r#"digest  username = "a\"b\\c" ,realm="r\,x",nonce="n",uri="sip:x",response="00",,  algorithm="sha-256""#;
        let c = credentials(v).expect("parses");
        assert_eq!(c.username, r#"a"b\c"#);
        assert_eq!(c.realm, "r,x");
        assert_eq!(c.algorithm, Algorithm::Sha256);
    }

    #[test]
    fn malformed_values_are_rejected() {
        assert_eq!(credentials(r#"Digest username="unterminated"#), None);
        assert_eq!(
            credentials(r#"Digest username="a" realm="b""#),
            None,
            "missing comma"
        );
        assert_eq!(
            credentials(
                r#"Digest username="a", username="b", realm="r", nonce="n", uri="u", response="x""#
            ),
            None
        );
        assert_eq!(
            credentials(r#"Digest realm="r", nonce="n", uri="u", response="x""#),
            None,
            "no username"
        );
        assert_eq!(
            credentials(
                r#"Digest username="a", realm="r", nonce="n", uri="u", response="x", algorithm=SHA-512-256"#
            ),
            None,
            "unknown algorithm"
        );
        assert_eq!(credentials(""), None);
    }

    #[test]
    fn sess_variant_is_verified() {
        let a = auth();
        let ch = &a.challenge(T0, false)[0];
        let mut c = credentials(&answer(
            ch,
            "1001",
            "secret",
            "REGISTER",
            "sip:example.com",
            true,
        ))
        .expect("parses");
        c.sess = true;
        c.response = expected_response(
            &c,
            "REGISTER",
            &ha1(Algorithm::Sha256, "1001", "example.com", "secret"),
        );
        assert_eq!(
            a.verify(
                &c,
                "REGISTER",
                "sip:example.com",
                T0,
                store_ha1("1001", "secret")
            ),
            AuthOutcome::Ok
        );
    }

    #[test]
    fn select_prefers_sha256_credentials_of_our_realm() {
        let a = auth();
        let ch = a.challenge(T0, false);
        let md5 = answer(
            &ch[1],
            "1001",
            "secret",
            "REGISTER",
            "sip:example.com",
            true,
        );
        let sha = answer(
            &ch[0],
            "1001",
            "secret",
            "REGISTER",
            "sip:example.com",
            true,
        );
        let other = r#"Digest username="x", realm="other", nonce="n", uri="u", response="r""#;
        let c = a
            .select([other, md5.as_str(), "Foo bar=baz", sha.as_str()])
            .expect("found");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(a.select([other]), None);
    }

    #[test]
    fn realm_with_quote_is_escaped_in_challenge_and_round_trips() {
        let a = Authenticator::new(r#"we"ird"#, SECRET, TTL);
        let ch = &a.challenge(T0, false)[0];
        assert!(ch.contains(r#"realm="we\"ird""#));
    }
}
