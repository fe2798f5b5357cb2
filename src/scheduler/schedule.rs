//! Cron schedules in a time zone, and their firing times across daylight
//! saving changes.
//!
//! The cron crate matches wall-clock fields; it silently drops a local time
//! that does not exist (so a 02:30 job would be lost on the spring-forward
//! night) and may yield a repeated local time in either offset. clerk
//! therefore walks the schedule in *naive local time* and maps every match to
//! an instant itself, with two documented rules:
//!
//! - a local time in a spring-forward gap fires at the first valid instant
//!   after the gap (02:30 on 2026-03-29 in Europe/Brussels fires at 03:00
//!   CEST); several matches inside one gap fire once;
//! - a repeated local time (fall-back) fires once, at its first occurrence.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// One `schedule:` entry: a cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    /// As written by the author (5 or 6 fields).
    pub source: String,
    pub timezone: Tz,
    /// Shared between bots with the same expression: 10,000 bots on
    /// `* * * * *` hold one parsed schedule, not 10,000.
    cron: Arc<cron::Schedule>,
}

type ParseCache = Mutex<HashMap<String, Result<Arc<cron::Schedule>, String>>>;

/// Parsed expressions, by their 6-field form.
fn cache() -> &'static ParseCache {
    static CACHE: OnceLock<ParseCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// How many cron matches are looked at before giving up on finding the next
/// firing (guards against pathological expressions).
const MAX_STEPS: usize = 100_000;

impl CronSchedule {
    /// Parses a 5-field crontab (`30 2 * * Mon-Fri`, seconds = 0) or a
    /// 6-field expression with seconds first (`*/2 * * * * *`).
    pub fn parse(source: &str, timezone: Tz) -> Result<CronSchedule, String> {
        let mut fields: Vec<String> = source.split_whitespace().map(str::to_string).collect();
        let n = fields.len();
        if n == 5 || n == 6 {
            check_fields(&fields)?;
            let dow = fields[n - 1].clone();
            fields[n - 1] = crontab_weekdays(&dow)?;
        }
        let expr = match n {
            5 => format!("0 {}", fields.join(" ")),
            6 => fields.join(" "),
            0 => return Err("the cron expression is empty".into()),
            _ => {
                return Err(format!(
                    "expected 5 fields (minute hour day month weekday) or 6 (with seconds first), found {n}"
                ));
            }
        };
        if let Some(hit) = cache().lock().ok().and_then(|c| c.get(&expr).cloned()) {
            return hit.map(|cron| CronSchedule {
                source: source.trim().to_string(),
                timezone,
                cron,
            });
        }
        let parsed = Self::parse_new(&expr);
        if let Ok(mut c) = cache().lock() {
            c.insert(expr, parsed.clone());
        }
        let s = CronSchedule {
            source: source.trim().to_string(),
            timezone,
            cron: parsed?,
        };
        Ok(s)
    }

    fn parse_new(expr: &str) -> Result<Arc<cron::Schedule>, String> {
        let cron = cron::Schedule::from_str(expr).map_err(|e| {
            // The crate's message repeats the expression with a caret; the
            // reason is its last line.
            let text = e.to_string();
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty() && l.trim() != "^")
                .unwrap_or("not a valid cron expression")
                .trim()
                .to_string()
        })?;
        // An expression that can never match (e.g. 31 February) is an error
        // the author wants to hear about.
        if cron.after(&Utc::now()).next().is_none() {
            return Err("the expression never matches a date".into());
        }
        Ok(Arc::new(cron))
    }

    /// The first firing strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local_after = after.with_timezone(&self.timezone).naive_local();
        // Walk wall-clock matches; `Utc` stands in for "no time zone".
        let start = Utc.from_utc_datetime(&local_after);
        for (i, m) in self.cron.after(&start).enumerate() {
            if i >= MAX_STEPS {
                return None;
            }
            let t = self.instant(m.naive_utc())?;
            if t > after {
                return Some(t);
            }
        }
        None
    }

    /// The local wall-clock time `naive` as an instant, by the rules above.
    pub fn instant(&self, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.timezone.from_local_datetime(&naive) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
            LocalResult::None => {
                // In a gap: the first whole minute that exists is where the
                // gap ends (tz transitions fall on whole minutes).
                let mut probe = naive.with_second(0)?.with_nanosecond(0)?;
                for _ in 0..(48 * 60) {
                    probe += chrono::Duration::minutes(1);
                    match self.timezone.from_local_datetime(&probe) {
                        LocalResult::Single(t) => return Some(t.with_timezone(&Utc)),
                        LocalResult::Ambiguous(t, _) => return Some(t.with_timezone(&Utc)),
                        LocalResult::None => {}
                    }
                }
                None
            }
        }
    }
}

/// One field of a cron expression: its name, range and names.
struct Field {
    name: &'static str,
    lo: u32,
    hi: u32,
    names: &'static [&'static str],
    /// What a name stands for, for the message ("a day", "a month").
    kind: &'static str,
}

const MONTHS: &[&str] = &[
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: &[&str] = &["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// Checks every field before the cron crate sees the expression, so the
/// author hears which field is wrong and why (the crate says "Hours must be
/// less than 23" for `25` and stops at the first problem). All problems are
/// reported, separated by `; `.
fn check_fields(fields: &[String]) -> Result<(), String> {
    let second = Field {
        name: "second",
        lo: 0,
        hi: 59,
        names: &[],
        kind: "",
    };
    let minute = Field {
        name: "minute",
        lo: 0,
        hi: 59,
        names: &[],
        kind: "",
    };
    let hour = Field {
        name: "hour",
        lo: 0,
        hi: 23,
        names: &[],
        kind: "",
    };
    let dom = Field {
        name: "day of month",
        lo: 1,
        hi: 31,
        names: &[],
        kind: "",
    };
    let month = Field {
        name: "month",
        lo: 1,
        hi: 12,
        names: MONTHS,
        kind: "a month",
    };
    let dow = Field {
        name: "day of week",
        lo: 0,
        hi: 7,
        names: DAYS,
        kind: "a day",
    };
    let specs: Vec<&Field> = if fields.len() == 6 {
        vec![&second, &minute, &hour, &dom, &month, &dow]
    } else {
        vec![&minute, &hour, &dom, &month, &dow]
    };
    let mut problems = Vec::new();
    for (text, spec) in fields.iter().zip(specs) {
        check_field(text, spec, &mut problems);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn check_field(text: &str, f: &Field, problems: &mut Vec<String>) {
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        if let Some(s) = step
            && !s.parse::<u32>().is_ok_and(|n| n > 0)
        {
            problems.push(format!("{} step `{s}` must be a positive number", f.name));
        }
        // `?` (any) is understood by the cron crate.
        if range == "*" || range == "?" {
            continue;
        }
        let (a, b) = match range.split_once('-') {
            Some((a, b)) => (a, Some(b)),
            None => (range, None),
        };
        let lo = value(a, f, problems);
        let hi = b.and_then(|b| value(b, f, problems));
        if let (Some(lo), Some(hi)) = (lo, hi)
            && lo > hi
            && f.name != "day of week"
        {
            problems.push(format!("{} range `{range}` goes backwards", f.name));
        }
    }
}

/// A number or a name in field `f`, or a problem.
fn value(t: &str, f: &Field, problems: &mut Vec<String>) -> Option<u32> {
    if t.is_empty() {
        problems.push(format!("{} has an empty value", f.name));
        return None;
    }
    if t.chars().all(|c| c.is_ascii_digit()) {
        return match t.parse::<u32>() {
            Ok(n) if (f.lo..=f.hi).contains(&n) => Some(n),
            _ => {
                problems.push(format!(
                    "{} `{t}` is out of range ({}-{})",
                    f.name, f.lo, f.hi
                ));
                None
            }
        };
    }
    if f.names.is_empty() {
        problems.push(format!("{} `{t}` is not a number", f.name));
        return None;
    }
    let short: String = t.chars().take(3).collect();
    let full_ok = f.names.iter().position(|n| n.eq_ignore_ascii_case(&short));
    // The crate accepts 3-letter names and full names (`Monday`).
    let known_long = |n: &str| {
        let long = match n {
            "Mon" => "monday",
            "Tue" => "tuesday",
            "Wed" => "wednesday",
            "Thu" => "thursday",
            "Fri" => "friday",
            "Sat" => "saturday",
            "Sun" => "sunday",
            "Jan" => "january",
            "Feb" => "february",
            "Mar" => "march",
            "Apr" => "april",
            "Jun" => "june",
            "Jul" => "july",
            "Aug" => "august",
            "Sep" => "september",
            "Oct" => "october",
            "Nov" => "november",
            "Dec" => "december",
            _ => "may",
        };
        t.eq_ignore_ascii_case(n) || t.eq_ignore_ascii_case(long)
    };
    match full_ok {
        Some(i) if known_long(f.names[i]) => Some(i as u32 + f.lo),
        _ => {
            // Names are three letters: one typo or one swap is a distance of 1.
            let typed = short.to_ascii_lowercase();
            let hint = f
                .names
                .iter()
                .map(|n| {
                    (
                        strsim::damerau_levenshtein(&typed, &n.to_ascii_lowercase()),
                        n,
                    )
                })
                .filter(|(d, _)| *d <= 1)
                .min_by_key(|(d, _)| *d)
                .map(|(_, s)| format!(" (did you mean `{s}`?)"))
                .unwrap_or_else(|| format!(" (use {} or {}-{})", f.names.join(", "), f.lo, f.hi));
            problems.push(format!("{} `{t}` is not {}{hint}", f.name, f.kind));
            None
        }
    }
}

/// The cron crate numbers weekdays 1 (Sunday) to 7 (Saturday); crontab uses
/// 0 or 7 for Sunday and 1 for Monday. Numeric weekdays are rewritten as
/// names (expanding ranges and steps), so `1-5` means Monday to Friday as
/// every administrator expects. Names, `*` and `*/n` pass unchanged (`*/n`
/// selects the same days under both numberings).
fn crontab_weekdays(field: &str) -> Result<String, String> {
    const NAMES: [&str; 8] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let mut out: Vec<String> = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let numeric = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit());
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) if numeric(a) && numeric(b) => (a, b),
            None if numeric(range) => (range, if step.is_some() { "6" } else { range }),
            _ => {
                out.push(part.to_string());
                continue;
            }
        };
        let day = |t: &str| -> Result<usize, String> {
            t.parse::<usize>().ok().filter(|d| *d <= 7).ok_or_else(|| {
                format!("day of week `{t}` must be 0-7 (0 or 7 = Sunday) or a name like Mon")
            })
        };
        let (lo, hi) = (day(lo)?, day(hi)?);
        if lo > hi {
            return Err(format!(
                "day-of-week range `{range}` goes backwards (write e.g. `5-7` or `Fri,Sat,Sun`)"
            ));
        }
        let step = match step {
            None => 1,
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| format!("day-of-week step `{s}` must be a positive number"))?,
        };
        for d in (lo..=hi).step_by(step) {
            let name = NAMES[d].to_string();
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    Ok(out.join(","))
}

/// A time zone by its IANA name (`Europe/Brussels`); `UTC` is accepted too.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name.trim()).map_err(|_| {
        let best = chrono_tz::TZ_VARIANTS
            .iter()
            .map(|tz| tz.name())
            .map(|n| {
                (
                    strsim::jaro_winkler(&n.to_lowercase(), &name.to_lowercase()),
                    n,
                )
            })
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match best {
            Some((score, n)) if score > 0.85 => {
                format!("unknown time zone `{name}` (did you mean `{n}`?)")
            }
            _ => format!("unknown time zone `{name}` (use an IANA name such as `Europe/Brussels`)"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn brussels(expr: &str) -> CronSchedule {
        CronSchedule::parse(expr, chrono_tz::Europe::Brussels).unwrap()
    }

    fn firings(s: &CronSchedule, from: &str, n: usize) -> Vec<String> {
        let mut t = utc(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = s.next_after(t).unwrap();
            out.push(t.to_rfc3339());
        }
        out
    }

    #[test]
    fn five_and_six_fields() {
        let s = CronSchedule::parse("30 2 * * Mon-Fri", chrono_tz::UTC).unwrap();
        assert_eq!(
            s.next_after(utc("2026-01-02T00:00:00Z")).unwrap(),
            utc("2026-01-02T02:30:00Z")
        );
        // 2026-01-03 is a Saturday: next is Monday the 5th.
        assert_eq!(
            s.next_after(utc("2026-01-02T02:30:00Z")).unwrap(),
            utc("2026-01-05T02:30:00Z")
        );
        let s = CronSchedule::parse("*/2 * * * * *", chrono_tz::UTC).unwrap();
        assert_eq!(
            s.next_after(utc("2026-01-02T00:00:01Z")).unwrap(),
            utc("2026-01-02T00:00:02Z")
        );
        assert!(CronSchedule::parse("* * *", chrono_tz::UTC).is_err());
        assert!(CronSchedule::parse("61 * * * *", chrono_tz::UTC).is_err());
        assert!(CronSchedule::parse("0 0 31 2 *", chrono_tz::UTC).is_err());
    }

    #[test]
    fn cron_errors_name_the_field_and_the_reason() {
        let err = |expr: &str| CronSchedule::parse(expr, chrono_tz::UTC).unwrap_err();
        let e = err("0 25 * * Mon-Fry");
        assert!(e.contains("hour `25` is out of range (0-23)"), "{e}");
        assert!(
            e.contains("day of week `Fry` is not a day (did you mean `Fri`?)"),
            "{e}"
        );
        let e = err("61 * * * *");
        assert!(e.contains("minute `61` is out of range (0-59)"), "{e}");
        let e = err("0 0 * Jnu *");
        assert!(
            e.contains("month `Jnu` is not a month (did you mean `Jun`?)"),
            "{e}"
        );
        let e = err("0 0 0 * *");
        assert!(e.contains("day of month `0` is out of range (1-31)"), "{e}");
        let e = err("*/0 * * * *");
        assert!(
            e.contains("minute step `0` must be a positive number"),
            "{e}"
        );
        let e = err("1-x * * * *");
        assert!(e.contains("minute `x` is not a number"), "{e}");
        let e = err("0 9-5 * * *");
        assert!(e.contains("hour range `9-5` goes backwards"), "{e}");
        // Valid forms still parse.
        for ok in ["0 9 * * Mon-Fri", "*/15 8-18 1,15 Jan-Jun 1-5", "0 0 * * ?"] {
            assert!(CronSchedule::parse(ok, chrono_tz::UTC).is_ok(), "{ok}");
        }
    }

    #[test]
    fn weekdays_are_numbered_as_in_crontab() {
        // 2026-01-04 is a Sunday.
        let at = |expr: &str| {
            let s = CronSchedule::parse(expr, chrono_tz::UTC).unwrap();
            firings(&s, "2026-01-03T12:00:00Z", 3)
        };
        assert_eq!(
            at("0 9 * * 1-5"),
            vec![
                "2026-01-05T09:00:00+00:00",
                "2026-01-06T09:00:00+00:00",
                "2026-01-07T09:00:00+00:00",
            ]
        );
        assert_eq!(at("0 9 * * 0")[0], "2026-01-04T09:00:00+00:00");
        assert_eq!(at("0 9 * * 7")[0], "2026-01-04T09:00:00+00:00");
        assert_eq!(at("0 9 * * Mon-Fri"), at("0 9 * * 1-5"));
        assert_eq!(at("0 9 * * 1-5/2")[1], "2026-01-07T09:00:00+00:00");
        assert!(CronSchedule::parse("0 9 * * 8", chrono_tz::UTC).is_err());
    }

    #[test]
    fn spring_forward_gap_fires_once_at_the_end_of_the_gap() {
        // 2026-03-29: Brussels goes from 02:00 CET to 03:00 CEST (01:00 UTC).
        let s = brussels("30 2 * * *");
        assert_eq!(
            firings(&s, "2026-03-27T12:00:00Z", 3),
            vec![
                "2026-03-28T01:30:00+00:00", // 02:30 CET
                "2026-03-29T01:00:00+00:00", // 02:30 does not exist: 03:00 CEST
                "2026-03-30T00:30:00+00:00", // 02:30 CEST
            ]
        );
        // Every 15 minutes: 02:00..02:45 collapse into one firing at 03:00,
        // and 03:00 itself is not fired a second time.
        let s = brussels("*/15 * * * *");
        assert_eq!(
            firings(&s, "2026-03-29T00:40:00Z", 4),
            vec![
                "2026-03-29T00:45:00+00:00", // 01:45 CET
                "2026-03-29T01:00:00+00:00", // 03:00 CEST
                "2026-03-29T01:15:00+00:00", // 03:15 CEST
                "2026-03-29T01:30:00+00:00",
            ]
        );
    }

    #[test]
    fn fall_back_repeated_hour_fires_once() {
        // 2026-10-25: Brussels goes from 03:00 CEST back to 02:00 CET (01:00 UTC).
        let s = brussels("30 2 * * *");
        assert_eq!(
            firings(&s, "2026-10-24T12:00:00Z", 3),
            vec![
                "2026-10-25T00:30:00+00:00", // 02:30 CEST, the first occurrence
                "2026-10-26T01:30:00+00:00", // 02:30 CET the next day
                "2026-10-27T01:30:00+00:00",
            ]
        );
        let s = brussels("0 * * * *");
        assert_eq!(
            firings(&s, "2026-10-24T23:30:00Z", 4),
            vec![
                "2026-10-25T00:00:00+00:00", // 02:00 CEST
                "2026-10-25T02:00:00+00:00", // 03:00 CET (02:00 CET is the repeat: not fired)
                "2026-10-25T03:00:00+00:00",
                "2026-10-25T04:00:00+00:00",
            ]
        );
        // Started during the repeated hour: nothing fires twice.
        assert_eq!(
            s.next_after(utc("2026-10-25T01:10:00Z")).unwrap(),
            utc("2026-10-25T02:00:00Z")
        );
    }

    #[test]
    fn time_zone_names() {
        assert!(parse_timezone("Europe/Brussels").is_ok());
        assert!(parse_timezone("UTC").is_ok());
        let e = parse_timezone("Europe/Brusels").unwrap_err();
        assert!(e.contains("did you mean `Europe/Brussels`"), "{e}");
    }
}
