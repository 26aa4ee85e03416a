//! Durations on the command line: `30s`, `500ms`, `50us`, `5m`, `1h` (a
//! bare number is seconds). Shared by the commands and by
//! examples/bench_peers.rs, which includes `bench.rs` (and so this file).

use std::time::Duration;

/// Parses a duration: a decimal number and a unit (`us`, `ms`, `s`, `m`,
/// `h`; none means seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let v: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?}: use e.g. 30s, 500ms, 5m"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1000.0,
        "us" | "µs" => v / 1e6,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("bad duration unit in {s:?}: use us, ms, s, m or h")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("bad duration {s:?}: out of range"))
}

/// Parses `--busy-poll`: a duration from 0 (off) to
/// [`uwire::net::busy_poll::MAX_BUSY_POLL`].
pub fn parse_busy_poll(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    let max = uwire::net::busy_poll::MAX_BUSY_POLL;
    if d > max {
        return Err(format!("--busy-poll {s:?}: at most {}ms", max.as_millis()));
    }
    Ok(d)
}
