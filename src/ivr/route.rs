//! Route selection: the first route of the plan whose number, caller and calendar conditions
//! hold for a call. PURE: the time is passed in.

use super::plan::{Calendar, Dialplan, NumberMatch, Route};

/// The route for a call to `called` from `caller` at `now`.
pub fn select<'a>(
    plan: &'a Dialplan,
    called: &str,
    caller: &str,
    now: jiff::Timestamp,
) -> Option<&'a Route> {
    plan.routes
        .iter()
        .find(|r| matches(plan, r, called, caller, now))
}

/// Whether `calendar` is open at `now` (its hours in its own time zone, not on a holiday).
pub fn is_open(calendar: &Calendar, now: jiff::Timestamp) -> bool {
    let local = now.to_zoned(calendar.timezone.clone()).datetime();
    if calendar.holidays.contains(&local.date()) {
        return false;
    }
    let day = usize::from(
        local
            .date()
            .weekday()
            .to_monday_zero_offset()
            .unsigned_abs(),
    );
    let time = local.time();
    calendar.hours.iter().any(|h| {
        // 24:00 is written as the last instant of the day: the end is inclusive then.
        let before_end = time < h.end || h.end == jiff::civil::Time::MAX;
        h.days[day] && time >= h.start && before_end
    })
}

fn matches(plan: &Dialplan, r: &Route, called: &str, caller: &str, now: jiff::Timestamp) -> bool {
    let number = match &r.number {
        NumberMatch::Exact(n) => called == n,
        NumberMatch::Prefix(p) => called.starts_with(p.as_str()),
        NumberMatch::Pattern(p) => p.is_match(called),
        NumberMatch::Any => true,
    };
    let caller_ok = r.caller.as_ref().is_none_or(|p| p.is_match(caller));
    let calendar_ok = r.calendar.as_ref().is_none_or(|c| {
        plan.calendars
            .get(&c.calendar)
            .is_some_and(|cal| is_open(cal, now) == c.open)
    });
    number && caller_ok && calendar_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ivr::parse::parse_hours;
    use crate::ivr::plan::{CalendarCond, Pattern, Pos};

    fn calendar(zone: &str, hours: &[&str], holidays: &[&str]) -> Calendar {
        Calendar {
            name: "cal".into(),
            timezone_name: zone.into(),
            timezone: jiff::tz::TimeZone::get(zone).expect("known zone"),
            hours: hours
                .iter()
                .map(|h| parse_hours(h).expect("valid hours"))
                .collect(),
            holidays: holidays
                .iter()
                .map(|d| d.parse().expect("valid date"))
                .collect(),
        }
    }

    fn at(utc: &str) -> jiff::Timestamp {
        utc.parse().expect("valid timestamp")
    }

    #[test]
    fn office_hours_follow_the_local_clock_across_the_dst_change() {
        let london = calendar("Europe/London", &["daily 09:00-17:00"], &[]);
        // 2026-03-29: the UK moves from GMT to BST at 01:00 UTC.
        assert!(!is_open(&london, at("2026-03-28T08:30:00Z")), "08:30 GMT");
        assert!(is_open(&london, at("2026-03-29T08:30:00Z")), "09:30 BST");
        assert!(is_open(&london, at("2026-03-29T15:59:00Z")), "16:59 BST");
        assert!(!is_open(&london, at("2026-03-29T16:00:00Z")), "17:00 BST");
        // The hour that does not exist locally is never open.
        let gap = calendar("Europe/London", &["daily 01:00-02:00"], &[]);
        assert!(!is_open(&gap, at("2026-03-29T00:59:00Z")), "00:59 GMT");
        assert!(!is_open(&gap, at("2026-03-29T01:00:00Z")), "02:00 BST");
        assert!(
            is_open(&gap, at("2026-03-30T00:30:00Z")),
            "01:30 BST next day"
        );
    }

    #[test]
    fn a_holiday_is_closed_all_day_by_its_local_date() {
        let ny = calendar("America/New_York", &["daily 00:00-24:00"], &["2026-12-25"]);
        assert!(
            is_open(&ny, at("2026-12-25T04:59:00Z")),
            "23:59 on the 24th"
        );
        assert!(
            !is_open(&ny, at("2026-12-25T05:00:00Z")),
            "00:00 on the 25th"
        );
        // 03:00 UTC on the 26th is still the 25th in New York.
        assert!(!is_open(&ny, at("2026-12-26T03:00:00Z")));
        assert!(is_open(&ny, at("2026-12-26T05:00:00Z")), "the 26th");
    }

    #[test]
    fn the_same_instant_is_open_in_london_and_closed_in_new_york() {
        let london = calendar("Europe/London", &["mon-fri 09:00-17:00"], &[]);
        let ny = calendar("America/New_York", &["mon-fri 09:00-17:00"], &[]);
        // Monday 2026-06-01, 12:00 UTC: 13:00 BST, 08:00 EDT.
        let noon = at("2026-06-01T12:00:00Z");
        assert!(is_open(&london, noon) && !is_open(&ny, noon));
        // 20:59 UTC: 21:59 BST, 16:59 EDT.
        let evening = at("2026-06-01T20:59:00Z");
        assert!(!is_open(&london, evening) && is_open(&ny, evening));
        // Saturday.
        assert!(!is_open(&london, at("2026-06-06T12:00:00Z")));
    }

    fn route(name: &str, number: NumberMatch, calendar: Option<CalendarCond>) -> Route {
        Route {
            name: name.into(),
            number,
            caller: None,
            calendar,
            flow: name.into(),
            at: Pos::default(),
        }
    }

    #[test]
    fn first_matching_route_wins_with_calendar_and_caller_conditions() {
        let mut plan = Dialplan::default();
        plan.calendars.insert(
            "office".into(),
            calendar("Europe/London", &["mon-fri 08:00-18:00"], &["2026-12-25"]),
        );
        let open = |open| {
            Some(CalendarCond {
                calendar: "office".into(),
                open,
            })
        };
        let vip = Pattern(regex::Regex::new("^9").expect("valid"));
        plan.routes = vec![
            Route {
                caller: Some(vip),
                ..route("vip", NumberMatch::Exact("100".into()), None)
            },
            route("day", NumberMatch::Exact("100".into()), open(true)),
            route("night", NumberMatch::Exact("100".into()), open(false)),
            route("intl", NumberMatch::Prefix("00".into()), None),
            route(
                "short",
                NumberMatch::Pattern(Pattern(regex::Regex::new("^[0-9]{4}$").expect("valid"))),
                None,
            ),
        ];
        let monday_10 = at("2026-06-01T09:00:00Z");
        let name = |called: &str, caller: &str, now| {
            select(&plan, called, caller, now).map(|r| r.name.as_str())
        };
        assert_eq!(name("100", "2001", monday_10), Some("day"));
        assert_eq!(name("100", "9001", monday_10), Some("vip"));
        assert_eq!(
            name("100", "2001", at("2026-12-25T10:00:00Z")),
            Some("night")
        );
        assert_eq!(name("0044123", "2001", monday_10), Some("intl"));
        assert_eq!(name("2001", "2002", monday_10), Some("short"));
        assert_eq!(name("12345", "2002", monday_10), None);
    }
}
