//! Calendars: their `[calendars.NAME]` tables, opening hours (`"mon-fri 08:00-18:00"`), days and
//! clock times, holidays.

use super::*;

/// Parses one line of opening hours: `"mon-fri 08:00-18:00"`, `"mon,wed 09:00-12:00"`,
/// `"daily 00:00-24:00"` (24:00 is the end of the day).
pub fn parse_hours(s: &str) -> Result<Hours, String> {
    let mut parts = s.split_whitespace();
    let (Some(days), Some(times), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err("expected DAYS HH:MM-HH:MM".into());
    };
    let mut set = [false; 7];
    if days == "daily" {
        set = [true; 7];
    } else {
        for item in days.split(',') {
            match item.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (weekday(a)?, weekday(b)?);
                    let mut d = a;
                    loop {
                        set[d] = true;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => set[weekday(item)?] = true,
            }
        }
    }
    let (start, end) = times
        .split_once('-')
        .ok_or_else(|| format!("expected HH:MM-HH:MM, found {times:?}"))?;
    let start = clock(start, false)?;
    let end = clock(end, true)?;
    if end <= start {
        return Err("the end must be after the start (split overnight hours in two lines)".into());
    }
    Ok(Hours {
        days: set,
        start,
        end,
    })
}

pub(super) fn decode_calendar(
    ctx: &mut Ctx,
    name: &str,
    node: &Node,
    path: String,
) -> Option<Calendar> {
    let f = Fields::of(ctx, node, path, "a calendar")?;
    f.check_keys(ctx, &["timezone", "hours", "holidays"]);
    let zone = f.req(ctx, "timezone", |ctx, n, p| {
        let s = string(ctx, n, p)?;
        match jiff::tz::TimeZone::get(s) {
            Ok(tz) => Some((s.to_owned(), tz)),
            Err(_) => {
                ctx.error(
                    &n.at,
                    p,
                    format!("unknown time zone \"{s}\""),
                    Some("use an IANA name such as Europe/London or America/New_York".into()),
                );
                None
            }
        }
    });
    let hours = f
        .req(ctx, "hours", |ctx, n, p| {
            array(ctx, n, p, |ctx, n, p| {
                let s = string(ctx, n, p)?;
                match parse_hours(s) {
                    Ok(h) => Some(h),
                    Err(m) => {
                        ctx.error(
                            &n.at,
                            p,
                            format!("bad hours \"{s}\": {m}"),
                            Some(
                                "write e.g. \"mon-fri 08:00-18:00\", \"mon,wed 09:00-12:00\" or \"daily 00:00-24:00\""
                                    .into(),
                            ),
                        );
                        None
                    }
                }
            })
        })
        .unwrap_or_default();
    let holidays = f
        .opt(ctx, "holidays", |ctx, n, p| array(ctx, n, p, date))
        .unwrap_or_default();
    let (timezone_name, timezone) = zone?;
    Some(Calendar {
        name: name.to_owned(),
        timezone_name,
        timezone,
        hours,
        holidays,
    })
}

pub(super) fn weekday(s: &str) -> Result<usize, String> {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    DAYS.iter()
        .position(|d| d.eq_ignore_ascii_case(s))
        .ok_or_else(|| format!("unknown day \"{s}\" (mon, tue, wed, thu, fri, sat, sun or daily)"))
}

pub(super) fn clock(s: &str, end: bool) -> Result<jiff::civil::Time, String> {
    let bad = || format!("bad time \"{s}\" (HH:MM)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: i8 = h.parse().map_err(|_| bad())?;
    let m: i8 = m.parse().map_err(|_| bad())?;
    if end && h == 24 && m == 0 {
        return Ok(jiff::civil::Time::MAX);
    }
    jiff::civil::Time::new(h, m, 0, 0).map_err(|_| bad())
}
