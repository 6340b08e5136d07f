//! `{{attribute}}` placeholders in dialplan text. PURE.
//!
//! `{{ name }}` (spaces allowed) is replaced by the attribute's value, or by nothing when the
//! attribute is not set. A `{{` without a closing `}}` is kept as written.

use super::interp::Attributes;
use super::plan::Template;

/// Fills the placeholders of `t` from `attrs` (an unknown name becomes the empty string).
pub fn render(t: &Template, attrs: &Attributes) -> String {
    render_with(t, attrs, |v, out| out.push_str(v))
}

/// Like [`render`], for a URL: each value is percent-encoded (all but RFC 3986 unreserved
/// characters), so a caller's number or name cannot add a path, query or host to it.
pub fn render_url(t: &Template, attrs: &Attributes) -> String {
    render_with(t, attrs, |v, out| {
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    })
}

fn render_with(t: &Template, attrs: &Attributes, push: impl Fn(&str, &mut String)) -> String {
    let mut out = String::with_capacity(t.0.len());
    let mut rest = t.0.as_str();
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..open]);
        let name = rest[open + 2..open + 2 + close].trim();
        if let Some(v) = attrs.get(name) {
            push(v, &mut out);
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
    fn url_values_are_percent_encoded() {
        let mut a = attrs();
        a.insert("caller_name".into(), "x/../admin?y=1#z é".into());
        let t = Template("https://hooks.example/ivr/{{caller}}?name={{caller_name}}".into());
        assert_eq!(
            render_url(&t, &a),
            "https://hooks.example/ivr/2001?name=x%2F..%2Fadmin%3Fy%3D1%23z%20%C3%A9"
        );
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
