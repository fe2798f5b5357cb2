//! Durations as authors write them: `500ms`, `2s`, `1m30s`, `2h`, or a number of seconds.

use std::time::Duration;

/// Parses `500ms`, `2s`, `10m`, `1h30m`, `1.5s`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return secs_to_duration(secs, text);
    }
    if let Some(num) = t.strip_suffix('s')
        && !num.ends_with('m')
        && !num.ends_with('n')
        && !num.ends_with('u')
        && let Ok(secs) = num.trim().parse::<f64>()
    {
        return secs_to_duration(secs, text);
    }
    humantime::parse_duration(t).map_err(|_| {
        format!("invalid duration `{text}` (expected e.g. `500ms`, `2s`, `10m`, `1h30m`)")
    })
}

fn secs_to_duration(secs: f64, text: &str) -> Result<Duration, String> {
    if !secs.is_finite() || !(0.0..=1.0e9).contains(&secs) {
        return Err(format!(
            "invalid duration `{text}` (must be between 0 and 1e9 seconds)"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("").is_err());
    }
}
