//! Trunks in their simplest form (issue 12; registration, failover and TLS come with the
//! trunks issue): a carrier or SBC at a fixed address, trusted by IP for what it sends in,
//! and the E.164 number prefixes it carries out. A call to a phone number leaves by the trunk
//! with the longest matching prefix, addressed `sip:+NUMBER@HOST:PORT`.

use std::net::SocketAddr;

/// One trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    pub name: String,
    /// Where its INVITEs go (and whose requests are trusted).
    pub addr: SocketAddr,
    /// E.164 prefixes it carries (`+44`, `+1555`); `+` alone carries every number.
    pub prefixes: Vec<String>,
    /// The caller number presented on calls out by it, if set.
    pub from: Option<String>,
}

impl Trunk {
    /// The SIP URI of `e164` (`+442079460000`) at this trunk.
    pub fn uri(&self, e164: &str) -> String {
        format!("sip:{e164}@{}", self.addr)
    }
}

/// The trunk for `e164`: the longest matching prefix (the first trunk listed on a tie).
pub fn route<'a>(trunks: &'a [Trunk], e164: &str) -> Option<&'a Trunk> {
    let mut best: Option<(&Trunk, usize)> = None;
    for t in trunks {
        for p in &t.prefixes {
            if e164.starts_with(p.as_str()) && best.is_none_or(|(_, len)| p.len() > len) {
                best = Some((t, p.len()));
            }
        }
    }
    best.map(|(t, _)| t)
}

/// Checks a prefix: `+` and up to 15 digits.
pub fn check_prefix(p: &str) -> Result<(), String> {
    let digits = p.strip_prefix('+').ok_or("must start with +")?;
    if digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must be + and up to 15 digits".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trunk(name: &str, prefixes: &[&str]) -> Trunk {
        Trunk {
            name: name.into(),
            addr: "127.0.0.1:5080".parse().expect("addr"),
            prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            from: None,
        }
    }

    #[test]
    fn the_longest_prefix_wins() {
        let trunks = [
            trunk("world", &["+"]),
            trunk("uk", &["+44"]),
            trunk("london", &["+4420"]),
        ];
        assert_eq!(
            route(&trunks, "+442079460000").map(|t| t.name.as_str()),
            Some("london")
        );
        assert_eq!(
            route(&trunks, "+447911123456").map(|t| t.name.as_str()),
            Some("uk")
        );
        assert_eq!(
            route(&trunks, "+15550100").map(|t| t.name.as_str()),
            Some("world")
        );
        assert_eq!(route(&trunks[1..], "+15550100"), None);
        assert_eq!(
            trunks[1].uri("+447911123456"),
            "sip:+447911123456@127.0.0.1:5080"
        );
    }

    #[test]
    fn prefixes_are_plus_and_digits() {
        assert!(check_prefix("+44").is_ok());
        assert!(check_prefix("+").is_ok());
        assert!(check_prefix("44").is_err());
        assert!(check_prefix("+44a").is_err());
    }
}
