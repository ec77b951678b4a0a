//! How a log record reads in one row of a page (the log explorer, the
//! dashboard's log panel): its fields inline, its time with the date when it
//! is not today.

use serde_json::{Map, Value};

/// Most characters of a record's fields shown inline.
pub const INLINE_FIELDS: usize = 160;

/// A record's fields on one line, `key=value` separated by spaces, cut with
/// `…` past `max` characters.
pub fn inline_fields(fields: &Map<String, Value>, max: usize) -> String {
    let mut line = String::new();
    for (key, value) in fields {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(key);
        line.push('=');
        match value {
            Value::String(s) => line.push_str(s),
            other => line.push_str(&other.to_string()),
        }
        if line.chars().count() > max {
            break;
        }
    }
    if line.chars().count() > max {
        line = line.chars().take(max.saturating_sub(1)).collect();
        line.push('…');
    }
    line
}

/// An RFC 3339 time (`2026-12-07T18:53:07.123Z`) as a row shows it: the
/// time of day to `digits` places after the seconds (0 to 3), with `MM-DD`
/// before it when its day is not `today` (`YYYY-MM-DD`).
pub fn row_time(rfc3339: &str, today: &str, digits: usize) -> String {
    let end = if digits == 0 { 19 } else { 20 + digits.min(3) };
    let clock = rfc3339.get(11..end).unwrap_or(rfc3339);
    match rfc3339.get(..10) {
        Some(day) if day != today => format!("{} {clock}", &day[5..]),
        _ => clock.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_inline_and_cut() {
        let mut fields = Map::new();
        fields.insert("order".into(), Value::from(7));
        fields.insert("user".into(), Value::from("ana"));
        assert_eq!(inline_fields(&fields, 100), "order=7 user=ana");
        assert_eq!(inline_fields(&fields, 8), "order=7…");
        assert_eq!(inline_fields(&Map::new(), 8), "");
    }

    #[test]
    fn the_date_shows_when_it_is_not_today() {
        let t = "2026-12-06T18:53:07.123Z";
        assert_eq!(row_time(t, "2026-12-06", 3), "18:53:07.123");
        assert_eq!(row_time(t, "2026-12-07", 3), "12-06 18:53:07.123");
        assert_eq!(row_time(t, "2026-12-07", 0), "12-06 18:53:07");
    }
}
