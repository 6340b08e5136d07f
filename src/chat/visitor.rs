//! Web chat visitor tokens (PURE): a visitor of the chat widget is anonymous; the server gives
//! them a token naming a visitor id it made, with what the pre-chat form said (unverified) and
//! an expiry, signed with HMAC-SHA256 under the server's chat key. The server never takes a
//! visitor or customer id from the page: only from a token it signed.
//!
//! Form: `<hex(JSON claims)>.<hex(HMAC-SHA256(key, hex(JSON claims)))>`.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a token says about its visitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visitor {
    /// The visitor id (made by the server).
    #[serde(rename = "v")]
    pub id: String,
    /// The pre-chat form's answers, unverified.
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Expiry, Unix ms.
    #[serde(rename = "x")]
    pub expires_ms: i64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the visitor token is malformed")]
    Malformed,
    #[error("the visitor token's signature is wrong")]
    Forged,
    #[error("the visitor token has expired")]
    Expired,
}

/// Signs and checks visitor tokens.
#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(…)")
    }
}

/// Longest token accepted (a token is a few hundred bytes).
const MAX_TOKEN: usize = 4096;

impl TokenKey {
    pub fn new(key: &[u8]) -> TokenKey {
        TokenKey(key.to_vec())
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(payload.as_bytes());
        mac
    }

    /// The token for `visitor`.
    pub fn sign(&self, visitor: &Visitor) -> String {
        let json = serde_json::to_vec(visitor).expect("claims serialise");
        let payload = hex::encode(json);
        let sig = hex::encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    /// The visitor of `token`, if it is ours and not expired at `now_ms`.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Visitor, TokenError> {
        if token.len() > MAX_TOKEN {
            return Err(TokenError::Malformed);
        }
        let (payload, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let sig = hex::decode(sig).map_err(|_| TokenError::Malformed)?;
        self.mac(payload)
            .verify_slice(&sig)
            .map_err(|_| TokenError::Forged)?;
        let json = hex::decode(payload).map_err(|_| TokenError::Malformed)?;
        let visitor: Visitor = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if visitor.expires_ms <= now_ms {
            return Err(TokenError::Expired);
        }
        Ok(visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ada() -> Visitor {
        Visitor {
            id: "v-1".into(),
            name: Some("Ada".into()),
            phone: None,
            email: Some("ada@example.com".into()),
            expires_ms: 2_000,
        }
    }

    #[test]
    fn a_signed_token_names_its_visitor_until_it_expires() {
        let key = TokenKey::new(b"k");
        let token = key.sign(&ada());
        assert_eq!(key.verify(&token, 1_999), Ok(ada()));
        assert_eq!(key.verify(&token, 2_000), Err(TokenError::Expired));
    }

    #[test]
    fn a_changed_or_foreign_token_is_refused() {
        let key = TokenKey::new(b"k");
        let token = key.sign(&ada());
        let mut other = ada();
        other.id = "v-2".into();
        let (_, sig) = token.split_once('.').expect("two parts");
        let forged = format!(
            "{}.{sig}",
            hex::encode(serde_json::to_vec(&other).expect("json"))
        );
        assert_eq!(key.verify(&forged, 0), Err(TokenError::Forged));
        assert_eq!(
            TokenKey::new(b"other").verify(&token, 0),
            Err(TokenError::Forged)
        );
        for bad in ["", "abc", "zz.zz", ".", &"a".repeat(5000)] {
            assert!(key.verify(bad, 0).is_err(), "{bad:?}");
        }
    }
}
