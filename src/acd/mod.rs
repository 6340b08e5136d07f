//! Automatic contact distribution (issue 13): queues of waiting calls and chats and the agents
//! who serve them. [`engine`] is the routing core (SANS-IO); [`service`] is its driver (one
//! task: the engine, the agents' presence in the store, events, offers to calls and chats).

pub mod engine;
pub mod service;

/// The highest skill level.
pub const MAX_LEVEL: u8 = 100;

/// Skill and queue names: lower-case ASCII letters, digits, `_` and `-`, at most 64.
pub fn is_skill_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `name` (level 1) or `name:level` (0 to [`MAX_LEVEL`]).
pub fn parse_skill(s: &str) -> Result<(String, u8), String> {
    let s = s.trim();
    let (name, level) = match s.split_once(':') {
        Some((name, level)) => {
            let level: u8 = level
                .trim()
                .parse()
                .ok()
                .filter(|l| *l <= MAX_LEVEL)
                .ok_or_else(|| format!("\"{s}\": the level is a whole number 0 to {MAX_LEVEL}"))?;
            (name.trim(), level)
        }
        None => (s, 1),
    };
    if !is_skill_name(name) {
        return Err(format!(
            "\"{name}\" is not a skill name (lower-case letters, digits, _ and -)"
        ));
    }
    Ok((name.to_owned(), level))
}

/// A comma-separated list of skills (`support:5,english:3`).
pub fn parse_skills(s: &str) -> Result<Vec<(String, u8)>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(parse_skill)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skills_parse_with_and_without_level() {
        assert_eq!(parse_skill("support"), Ok(("support".into(), 1)));
        assert_eq!(
            parse_skills("support:5, english:3"),
            Ok(vec![("support".into(), 5), ("english".into(), 3)])
        );
        assert!(parse_skill("support:101").is_err());
        assert!(parse_skill("Support").is_err());
        assert!(parse_skill("a b").is_err());
        assert!(parse_skill("x:-1").is_err());
    }
}
