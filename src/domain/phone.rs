//! Phone numbers as customer identities (PURE): every number that reaches a customer lookup —
//! a caller's number from a trunk, a phone typed into the chat widget, a gateway's sender —
//! is normalised to E.164 first, so `+44 20 7946 0000`, `02079460000` (default region GB) and
//! `+442079460000` are one customer. Parsing and validation are Google's libphonenumber rules
//! (the `phonenumber` crate); a number they cannot place keeps its digits (and a leading `+`),
//! so a short internal number or a malformed one is still matched exactly as it came.

use phonenumber::Mode;
use phonenumber::country::Id;

/// Normalises phone numbers against a default region (ISO 3166 alpha-2, e.g. `GB`) for
/// numbers written without a country code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhoneRules {
    region: Option<Id>,
}

impl PhoneRules {
    /// Rules for `region` (`None`: national numbers are kept as digits).
    pub fn new(region: Option<&str>) -> Result<PhoneRules, String> {
        let region = match region.map(str::trim).filter(|r| !r.is_empty()) {
            None => None,
            Some(r) => Some(
                r.to_ascii_uppercase()
                    .parse::<Id>()
                    .map_err(|_| format!("unknown region {r:?} (use an ISO 3166 code like GB)"))?,
            ),
        };
        Ok(PhoneRules { region })
    }

    /// These rules in a word (`e164:GB`, `e164:-`), to tell whether stored numbers were
    /// normalised under them.
    pub fn describe(&self) -> String {
        match self.region {
            Some(r) => format!("e164:{}", r.as_ref()),
            None => "e164:-".into(),
        }
    }

    /// The E.164 form of `raw` (`+442079460000`), or, when it is no valid number, its digits
    /// with a leading `+` kept (`+1 555 0100` → `+15550100`); None when it has no digit.
    pub fn normalise(&self, raw: &str) -> Option<String> {
        let raw = raw.trim();
        // A SIP user part may carry visual separators (RFC 3966) or a `tel:` prefix.
        let raw = raw.strip_prefix("tel:").unwrap_or(raw);
        let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
        if digits.is_empty() || digits.len() > 20 {
            return None;
        }
        let international = raw.starts_with('+') || raw.starts_with("00");
        if let Ok(n) = phonenumber::parse(self.region, raw)
            && phonenumber::is_valid(&n)
        {
            return Some(n.format().mode(Mode::E164).to_string());
        }
        Some(if raw.starts_with('+') {
            format!("+{digits}")
        } else if international && raw.starts_with("00") {
            format!("+{}", &digits[2..])
        } else {
            digits
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_number_in_every_format_is_one_e164() {
        let gb = PhoneRules::new(Some("gb")).expect("GB");
        for raw in [
            "+44 20 7946 0000",
            "02079460000",
            "020 7946 0000",
            "+442079460000",
            "0044 20 7946 0000",
            "tel:+44-20-7946-0000",
        ] {
            assert_eq!(gb.normalise(raw).as_deref(), Some("+442079460000"), "{raw}");
        }
    }

    #[test]
    fn a_number_no_rule_places_keeps_its_digits() {
        let gb = PhoneRules::new(Some("GB")).expect("GB");
        assert_eq!(
            gb.normalise("2001").as_deref(),
            Some("2001"),
            "an extension"
        );
        assert_eq!(gb.normalise("+1 555 0100").as_deref(), Some("+15550100"));
        assert_eq!(gb.normalise("anonymous"), None);
        let none = PhoneRules::default();
        assert_eq!(
            none.normalise("02079460000").as_deref(),
            Some("02079460000"),
            "no default region: a national number stays as it came"
        );
        assert_eq!(
            none.normalise("+44 20 7946 0000").as_deref(),
            Some("+442079460000")
        );
    }

    #[test]
    fn an_unknown_region_is_refused() {
        assert!(PhoneRules::new(Some("XX")).is_err());
        assert_eq!(PhoneRules::new(Some("")), Ok(PhoneRules::default()));
    }
}
