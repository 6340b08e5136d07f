//! Masking at ingest (PURE): card numbers in text from outside are replaced by their last four
//! digits before anything is stored, published, delivered or logged, so the clear number never
//! reaches the database.
//!
//! A card number is 13–19 digits, possibly grouped by single spaces or dashes, with an issuer
//! prefix (Visa 4, Mastercard 51–55 and 2221–2720, American Express 34/37, Discover 6011/65,
//! Diners 36/38/300–305, JCB 3528–3589, UnionPay 62, Maestro 50/56–69) and a valid Luhn check
//! digit; it is written `•••• 1111`. Operators may add patterns of their own (national id
//! numbers), each replaced by `•••`.

use regex::Regex;

/// Replaces card numbers and the configured patterns in text.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    extra: Vec<Regex>,
}

impl Masker {
    /// A masker with `patterns` (regular expressions) besides card numbers.
    pub fn new(patterns: &[String]) -> Result<Masker, String> {
        let extra = patterns
            .iter()
            .map(|p| Regex::new(p).map_err(|e| format!("bad mask pattern {p:?}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Masker { extra })
    }

    /// `text` with every card number and configured pattern masked.
    pub fn mask(&self, text: &str) -> String {
        let mut out = mask_cards(text);
        for re in &self.extra {
            if re.is_match(&out) {
                out = re.replace_all(&out, "•••").into_owned();
            }
        }
        out
    }
}

/// `text` with card numbers replaced by `•••• <last four>`.
pub fn mask_cards(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        // A candidate starts at a digit not preceded by a digit.
        if !bytes[i].is_ascii_digit() || (i > 0 && bytes[i - 1].is_ascii_digit()) {
            i += 1;
            continue;
        }
        let (end, digits) = digit_run(bytes, i);
        if is_card(&digits) {
            out.push_str(&text[copied..i]);
            out.push_str("•••• ");
            out.push_str(&digits[digits.len() - 4..]);
            copied = end;
        }
        i = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// From `start`: the end of a run of digits separated by at most one space or dash, and its
/// digits.
fn digit_run(bytes: &[u8], start: usize) -> (usize, String) {
    let mut digits = String::new();
    let mut i = start;
    let mut end = start;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_digit() {
            digits.push(b as char);
            i += 1;
            end = i;
        } else if (b == b' ' || b == b'-') && i + 1 < bytes.len() && bytes[i + 1].is_ascii_digit() {
            i += 1;
        } else {
            break;
        }
        if digits.len() > 19 {
            break;
        }
    }
    (end, digits)
}

/// 13–19 digits with an issuer prefix and a valid Luhn check digit.
fn is_card(digits: &str) -> bool {
    (13..=19).contains(&digits.len()) && issuer(digits) && luhn(digits)
}

fn issuer(d: &str) -> bool {
    let p = |n: usize| d[..n].parse::<u32>().unwrap_or(0);
    d.starts_with('4')
        || (51..=55).contains(&p(2))
        || (2221..=2720).contains(&p(4))
        || matches!(p(2), 34 | 37 | 36 | 38 | 62 | 65 | 50 | 56..=69)
        || (300..=305).contains(&p(3))
        || d.starts_with("6011")
        || (3528..=3589).contains(&p(4))
}

/// The Luhn check (ISO/IEC 7812-1).
fn luhn(d: &str) -> bool {
    let sum: u32 = d
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let v = u32::from(b - b'0');
            if i % 2 == 1 {
                let x = v * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                v
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_in_any_grouping_keep_their_last_four() {
        for (text, want) in [
            ("4111111111111111", "•••• 1111"),
            (
                "my card is 4111 1111 1111 1111 ok",
                "my card is •••• 1111 ok",
            ),
            ("5555-5555-5555-4444.", "•••• 4444."),
            ("amex 3782 822463 10005", "amex •••• 0005"),
            (
                "two: 4012888888881881 and 6011111111111117",
                "two: •••• 1881 and •••• 1117",
            ),
        ] {
            assert_eq!(mask_cards(text), want, "{text}");
        }
    }

    #[test]
    fn numbers_that_are_not_cards_stay() {
        for text in [
            "order 4111111111111112", // Luhn fails
            "call +44 20 7946 0000",  // a phone number
            "1234567890123456",       // no issuer prefix
            "ref 411111111111",       // too short
            "price 4,111.11 on 2026-12-07",
        ] {
            assert_eq!(mask_cards(text), text);
        }
    }

    #[test]
    fn configured_patterns_are_masked_too() {
        let m = Masker::new(&[r"\b\d{3}-\d{2}-\d{4}\b".into()]).expect("pattern");
        assert_eq!(
            m.mask("ssn 078-05-1120, card 4111111111111111"),
            "ssn •••, card •••• 1111"
        );
        assert!(Masker::new(&["(".into()]).is_err());
    }
}
