//! Results as the JSON file every subcommand can write, and the machine they came from.
//!
//! `{"machine": {...}, "results": [{"scenario", "system", "events", "seconds",
//! "events_per_sec", "p50_us", "p99_us", "p999_us", "peak_rss_mb"}]}`, `null` where a figure
//! was not measured.

use std::path::Path;

use serde::Serialize;

/// One measured row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub system: String,
    pub events: u64,
    pub seconds: f64,
    pub events_per_sec: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub peak_rss_mb: Option<f64>,
}

impl Row {
    /// A throughput row (no latency figures).
    pub fn throughput(scenario: &str, system: &str, events: u64, seconds: f64, peak_rss_mb: Option<f64>) -> Row {
        Row {
            scenario: scenario.to_owned(),
            system: system.to_owned(),
            events,
            seconds,
            events_per_sec: events as f64 / seconds,
            p50_us: None,
            p99_us: None,
            p999_us: None,
            peak_rss_mb,
        }
    }
}

/// What the figures were measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: Option<f64>,
    pub os: String,
    pub date_utc: String,
    pub command: String,
}

impl Machine {
    pub fn here() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, m)| m.trim().to_owned());
        let memory_gib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            let kib: f64 = m.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some((kib / 1024.0 / 1024.0 * 10.0).round() / 10.0)
        });
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            date_utc: utc_now(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
        }
    }
}

/// `YYYY-MM-DD HH:MM` in UTC, from the system clock (civil-from-days, no time zone data).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}", rem / 3600, rem % 3600 / 60)
}

#[derive(Serialize)]
struct File<'a> {
    machine: &'a Machine,
    results: &'a [Row],
}

/// Writes the JSON report.
pub fn write_json(path: &Path, machine: &Machine, results: &[Row]) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(&File { machine, results }).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}

/// Forgets the process's peak resident set so far (Linux: `/proc/self/clear_refs`), so that
/// the next [`peak_rss_mb`] is the peak of what runs in between.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident set in MiB (`VmHWM`), if the platform says.
pub fn peak_rss_mb() -> Option<f64> {
    status_kib("VmHWM:").map(|kib| kib as f64 / 1024.0)
}

/// The process's resident set now, in KiB (`VmRSS`).
pub fn rss_kib() -> Option<u64> {
    status_kib("VmRSS:")
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_documented_shape() {
        let machine = Machine::here();
        let rows = [Row::throughput("uniform-10k", "humpyard", 10, 0.5, None)];
        let value = serde_json::to_value(File {
            machine: &machine,
            results: &rows,
        })
        .unwrap();
        let row = &value["results"][0];
        for key in [
            "scenario",
            "system",
            "events",
            "seconds",
            "events_per_sec",
            "p50_us",
            "p99_us",
            "p999_us",
            "peak_rss_mb",
        ] {
            assert!(row.get(key).is_some(), "{key} missing");
        }
        assert_eq!(row["events_per_sec"], 20.0);
        assert!(row["p99_us"].is_null());
        assert!(value["machine"]["cores"].as_u64().unwrap() >= 1);
    }
}
