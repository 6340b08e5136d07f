//! `{{attribute}}` placeholders in dialplan text. PURE.
//!
//! `{{ name }}` (spaces allowed) is replaced by the attribute's value, or by nothing when the
//! attribute is not set. A `{{` without a closing `}}` is kept as written.

use super::interp::Attributes;
use super::plan::Template;

/// Fills the placeholders of `t` from `attrs` (an unknown name becomes the empty string).
pub fn render(t: &Template, attrs: &Attributes) -> String {
    let mut out = String::with_capacity(t.0.len());
    let mut rest = t.0.as_str();
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..open]);
        let name = rest[open + 2..open + 2 + close].trim();
        if let Some(v) = attrs.get(name) {
            out.push_str(v);
        }
        rest = &rest[open + 2 + close + 2..];
    }
    out.push_str(rest);
    out
}

/// The attribute names a template refers to (for checks), in order.
pub fn names(t: &Template) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = t.0.as_str();
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else {
            break;
        };
        names.push(rest[open + 2..open + 2 + close].trim().to_owned());
        rest = &rest[open + 2 + close + 2..];
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs() -> Attributes {
        [("caller", "2001"), ("account", "42")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn fills_known_and_empties_unknown() {
        let t = Template("from {{caller}} acct {{ account }} x{{missing}}y".into());
        assert_eq!(render(&t, &attrs()), "from 2001 acct 42 xy");
        assert_eq!(names(&t), ["caller", "account", "missing"]);
    }

    #[test]
    fn unclosed_braces_stay() {
        let t = Template("a {{caller}} b {{oops".into());
        assert_eq!(render(&t, &attrs()), "a 2001 b {{oops");
        assert_eq!(names(&t), ["caller"]);
    }

    #[test]
    fn multibyte_text_around_placeholders() {
        let t = Template("é{{caller}}ü".into());
        assert_eq!(render(&t, &attrs()), "é2001ü");
    }
}
