//! Recurring jobs from the configuration file: `[schedules.NAME]` tables (docs/FLOW.md), a
//! cron expression in a time zone, the job tool and arguments it enqueues, the client it
//! runs as, and what happens to ticks missed while no daemon ran.
//!
//! Owns reading and checking the tables (unknown keys, the cron expression, the zone, the
//! missed-tick policy) and the tick arithmetic: which ticks are due between two instants,
//! across daylight-saving changes (`croner` over `chrono-tz`, so zone rules are the IANA
//! database's, not ours). It must not enqueue anything nor check the tool and arguments
//! (`tools::Registry::from_settings` does, it knows the schemas); `scheduler` runs them.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::Deserialize;

use super::{ClientKeys, ConfigError};

/// What a daemon does with the ticks that fell due while no daemon ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// Dropped: the schedule resumes with its next tick.
    Skip,
    /// One job for the latest missed tick.
    Once,
    /// One job for each of the latest `n` missed ticks.
    All(u32),
}

#[derive(Debug, Clone)]
pub struct ScheduleDef {
    pub name: String,
    /// The expression as written (`mcpq schedules list`).
    pub cron_text: String,
    pub cron: Cron,
    pub zone: Tz,
    pub tool: String,
    /// The job's arguments, a JSON object (checked against the tool's schema at start).
    pub arguments: serde_json::Value,
    pub client: String,
    pub missed: Missed,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    cron: String,
    #[serde(default = "utc")]
    timezone: String,
    tool: String,
    #[serde(default)]
    arguments: Option<toml::Table>,
    client: String,
    #[serde(default = "skip")]
    missed: String,
    max_catch_up: Option<u32>,
}

fn utc() -> String {
    "UTC".into()
}
fn skip() -> String {
    "skip".into()
}

fn invalid(name: &str, msg: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid(format!("schedules.{name}: {msg}"))
}

/// Most ticks one catch-up may enqueue (`max_catch_up`).
pub const MAX_CATCH_UP: u32 = 1000;

/// The `[schedules]` tables of the configuration file (none without a file).
pub fn load(file: Option<&Path>) -> Result<Vec<ScheduleDef>, ConfigError> {
    let Some(file) = file else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::Invalid(format!("cannot read {}: {e}", file.display())))?;
    parse(&text)
}

/// Parses the `[schedules]` tables of a TOML document.
pub fn parse(text: &str) -> Result<Vec<ScheduleDef>, ConfigError> {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        schedules: BTreeMap<String, toml::Value>,
    }
    let doc: Doc = toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    doc.schedules
        .into_iter()
        .map(|(name, table)| one(&name, table))
        .collect()
}

fn one(name: &str, table: toml::Value) -> Result<ScheduleDef, ConfigError> {
    if name.is_empty() || name.len() > 64 || name.contains(':') {
        return Err(invalid(name, "a name is 1 to 64 characters, no `:`"));
    }
    let raw: RawSchedule = table
        .try_into()
        .map_err(|e: toml::de::Error| invalid(name, e.message()))?;
    let cron = Cron::from_str(&raw.cron)
        .map_err(|e| invalid(name, format!("cron {:?}: {e}", raw.cron)))?;
    let zone = Tz::from_str(&raw.timezone).map_err(|_| {
        invalid(
            name,
            format!("timezone {:?} is not an IANA zone name", raw.timezone),
        )
    })?;
    let missed = match (raw.missed.as_str(), raw.max_catch_up) {
        ("skip", None) => Missed::Skip,
        ("once", None) => Missed::Once,
        ("all", Some(n)) if (1..=MAX_CATCH_UP).contains(&n) => Missed::All(n),
        ("all", _) => {
            return Err(invalid(
                name,
                format!("missed = \"all\" needs max_catch_up = 1..={MAX_CATCH_UP}"),
            ))
        }
        ("skip" | "once", Some(_)) => {
            return Err(invalid(
                name,
                "max_catch_up goes with missed = \"all\" only",
            ))
        }
        (other, _) => {
            return Err(invalid(
                name,
                format!("missed {other:?}: one of skip, once, all"),
            ))
        }
    };
    let arguments = serde_json::to_value(raw.arguments.unwrap_or_default())
        .map_err(|e| invalid(name, format!("arguments: {e}")))?;
    let def = ScheduleDef {
        name: name.to_string(),
        cron_text: raw.cron,
        cron,
        zone,
        tool: raw.tool,
        arguments,
        client: raw.client,
        missed,
    };
    // A pattern that never matches (`0 0 30 2 *`) is refused rather than silently idle.
    if def.next_after(Utc::now().timestamp_millis()).is_none() {
        return Err(invalid(name, "the cron expression never matches"));
    }
    Ok(def)
}

/// Every schedule runs as a configured client.
pub fn check_clients(
    schedules: &[ScheduleDef],
    clients: &BTreeMap<String, ClientKeys>,
) -> Result<(), ConfigError> {
    for s in schedules {
        if !clients.contains_key(&s.client) {
            return Err(invalid(
                &s.name,
                format!("client {:?} is not a [clients] entry", s.client),
            ));
        }
    }
    Ok(())
}

impl ScheduleDef {
    /// The first tick strictly after `ms` (ms since the epoch), if any.
    pub fn next_after(&self, ms: i64) -> Option<i64> {
        let at = self.zone.timestamp_millis_opt(ms).single()?;
        self.cron
            .find_next_occurrence(&at, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The last tick at or before `ms`, if any.
    pub fn last_at_or_before(&self, ms: i64) -> Option<i64> {
        let at = self.zone.timestamp_millis_opt(ms).single()?;
        self.cron
            .find_previous_occurrence(&at, true)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The next `n` ticks after `ms`.
    pub fn upcoming(&self, ms: i64, n: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(n);
        let mut at = ms;
        while out.len() < n {
            match self.next_after(at) {
                Some(t) => {
                    out.push(t);
                    at = t;
                }
                None => break,
            }
        }
        out
    }

    /// The ticks to enqueue now, oldest first. `last`: the schedule's last recorded tick;
    /// `on_time_after`: ticks after this instant fell due while a scheduler was running
    /// (the previous pass of this one) and are all enqueued; ticks in `(last,
    /// on_time_after]` were missed while nothing ran and go through the `missed` policy.
    /// Walks backwards from `now`, so a long outage costs at most the ticks it keeps.
    pub fn due(&self, last: i64, on_time_after: i64, now: i64) -> Vec<i64> {
        let keep_missed = match self.missed {
            Missed::Skip => 0,
            Missed::Once => 1,
            Missed::All(n) => n as usize,
        };
        let mut out = Vec::new();
        let mut missed = 0usize;
        let mut at = now;
        // On-time ticks are bounded by one pass's worth; the cap guards a stalled clock.
        for _ in 0..(keep_missed + 10_000) {
            let Some(t) = self.last_at_or_before(at) else {
                break;
            };
            if t <= last {
                break;
            }
            if t <= on_time_after {
                if missed == keep_missed {
                    break;
                }
                missed += 1;
            }
            out.push(t);
            at = t - 1;
        }
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(cron: &str, zone: &str, missed: &str) -> ScheduleDef {
        let extra = if missed.starts_with("all") {
            "missed = \"all\"\nmax_catch_up = 3"
        } else {
            missed
        };
        let text = format!(
            "[schedules.s]\ncron = {cron:?}\ntimezone = {zone:?}\ntool = \"t\"\nclient = \"c\"\n{extra}\n"
        );
        parse(&text).unwrap().remove(0)
    }

    fn utc_ms(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn spring_forward_skips_the_missing_hour_and_fall_back_repeats_it() {
        // Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let half_hourly = def("0 */30 * * * *", "Europe/Berlin", "");
        let from = utc_ms(2026, 3, 29, 0, 0); // 01:00 CET
        let ticks = half_hourly.upcoming(from, 3);
        // 01:30 CET, then 03:00 CEST and 03:30 CEST: no 02:00 or 02:30, which do not exist.
        assert_eq!(
            ticks,
            vec![
                utc_ms(2026, 3, 29, 0, 30),
                utc_ms(2026, 3, 29, 1, 0),
                utc_ms(2026, 3, 29, 1, 30)
            ]
        );
        // A daily 02:30 job runs once that day, right after the gap (03:00 CEST).
        let daily = def("30 2 * * *", "Europe/Berlin", "");
        let t = daily.next_after(from).unwrap();
        assert_eq!(t, utc_ms(2026, 3, 29, 1, 0));
        assert_eq!(daily.next_after(t).unwrap(), utc_ms(2026, 3, 30, 0, 30));

        // 2026-10-25: 03:00 CEST falls back to 02:00 CET (01:00 UTC): 02:00-03:00 twice.
        let from = utc_ms(2026, 10, 24, 23, 0); // 01:00 CEST
        let hourly = half_hourly.upcoming(from, 6);
        assert_eq!(
            hourly,
            vec![
                utc_ms(2026, 10, 24, 23, 30), // 01:30 CEST
                utc_ms(2026, 10, 25, 0, 0),   // 02:00 CEST
                utc_ms(2026, 10, 25, 0, 30),  // 02:30 CEST
                utc_ms(2026, 10, 25, 1, 0),   // 02:00 CET (again)
                utc_ms(2026, 10, 25, 1, 30),  // 02:30 CET (again)
                utc_ms(2026, 10, 25, 2, 0),   // 03:00 CET
            ]
        );
        // A fixed-time job (02:30) runs once, at its first occurrence.
        let t = daily.next_after(from).unwrap();
        assert_eq!(t, utc_ms(2026, 10, 25, 0, 30));
        assert_eq!(daily.next_after(t).unwrap(), utc_ms(2026, 10, 26, 1, 30));
        // And the due ticks of a pass over the repeated hour are each enqueued once.
        let due = half_hourly.due(from, from, utc_ms(2026, 10, 25, 1, 45));
        assert_eq!(due, hourly[..5].to_vec());
    }

    #[test]
    fn seconds_are_optional_and_names_appear_in_errors() {
        assert_eq!(
            def("* * * * * *", "UTC", "").upcoming(0, 2),
            vec![1000, 2000]
        );
        assert_eq!(def("* * * * *", "UTC", "").upcoming(0, 1), vec![60_000]);
        let bad = |body: &str| {
            let e = parse(&format!("[schedules.nightly]\n{body}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("schedules.nightly"), "{e}");
            e
        };
        let ok = "tool = \"t\"\nclient = \"c\"";
        assert!(bad(&format!("cron = \"61 * * * *\"\n{ok}")).contains("cron"));
        assert!(bad(&format!(
            "cron = \"* * * * *\"\ntimezone = \"Mars/Olympus\"\n{ok}"
        ))
        .contains("Mars/Olympus"));
        assert!(
            bad(&format!("cron = \"* * * * *\"\nmissed = \"all\"\n{ok}")).contains("max_catch_up")
        );
        assert!(bad(&format!("cron = \"* * * * *\"\nmissed = \"twice\"\n{ok}")).contains("twice"));
        assert!(bad(&format!("cron = \"* * * * *\"\nevery = 1\n{ok}")).contains("every"));
        assert!(bad(&format!("cron = \"0 0 30 2 *\"\n{ok}")).contains("never"));
    }

    #[test]
    fn each_missed_policy_after_a_ten_second_outage() {
        // Every second; the last tick recorded at T, then nothing ran until T + 10.5 s, when
        // a daemon starts (its first pass counts ticks older than one second as missed).
        let t0 = 1_800_000_000_000;
        let now = t0 + 10_500;
        let on_time_after = now - 1000;
        let skip = def("* * * * * *", "UTC", "").due(t0, on_time_after, now);
        assert_eq!(skip, vec![t0 + 10_000], "skip: only the tick due now");
        let once = def("* * * * * *", "UTC", "missed = \"once\"").due(t0, on_time_after, now);
        assert_eq!(once, vec![t0 + 9_000, t0 + 10_000], "once: one catch-up");
        let all = def("* * * * * *", "UTC", "all").due(t0, on_time_after, now);
        assert_eq!(
            all,
            vec![t0 + 7_000, t0 + 8_000, t0 + 9_000, t0 + 10_000],
            "all: the latest max_catch_up = 3 missed, then the tick due now"
        );
        // In steady state (a pass a second ago) nothing is missed.
        let steady = def("* * * * * *", "UTC", "").due(t0 + 9_000, t0 + 9_200, now);
        assert_eq!(steady, vec![t0 + 10_000]);
        // Nothing due twice: ticks at or before the recorded one are done.
        assert!(def("* * * * * *", "UTC", "all")
            .due(t0 + 10_000, on_time_after, now)
            .is_empty());
    }
}
