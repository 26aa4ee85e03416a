//! Access log: one line per request, written when the response has been
//! sent (so the byte count is the real one), in nginx's `combined` format
//! or as JSON lines.
//!
//! ```text
//! combined: 203.0.113.9 - - [02/Dec/2026:07:44:29 +0000] "GET /a?b=1 HTTP/1.1" 200 512 "-" "curl/8.5.0"
//! json:     {"time":"2026-12-02T07:44:29.120Z","remote_addr":"203.0.113.9","method":"GET",...}
//! ```
//!
//! Lines go to standard error, standard output or a file opened for
//! appending (one `write` per line); [`AccessLog::reopen`] reopens the file
//! after log rotation (`uwire proxy` calls it on SIGHUP).

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How each line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLogFormat {
    /// nginx's `combined`: `$remote_addr - $remote_user [$time_local]
    /// "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`
    /// (time in UTC).
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

impl FromStr for AccessLogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<AccessLogFormat, String> {
        match s {
            "combined" => Ok(AccessLogFormat::Combined),
            "json" => Ok(AccessLogFormat::Json),
            _ => Err(format!("access log format {s:?}: use combined or json")),
        }
    }
}

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AccessLogTarget {
    /// No access log (the library's default; `uwire proxy` logs to
    /// standard error unless told otherwise).
    #[default]
    Off,
    /// Standard error (`-` or `stderr`).
    Stderr,
    /// Standard output (`stdout`).
    Stdout,
    /// A file, opened for appending (created if missing).
    File(PathBuf),
}

impl FromStr for AccessLogTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<AccessLogTarget, String> {
        Ok(match s {
            "" => return Err("empty access log target: use off, stderr, stdout or a path".into()),
            "off" => AccessLogTarget::Off,
            "-" | "stderr" => AccessLogTarget::Stderr,
            "stdout" => AccessLogTarget::Stdout,
            p => AccessLogTarget::File(PathBuf::from(p)),
        })
    }
}

/// What one line says about one request.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// The client (after PROXY protocol / trusted forwarding).
    pub client: SocketAddr,
    /// When the request head arrived.
    pub time: SystemTime,
    /// The method.
    pub method: String,
    /// The request target as received.
    pub target: String,
    /// `HTTP/1.1`, `HTTP/2.0`, ...
    pub version: &'static str,
    /// The status sent.
    pub status: u16,
    /// Response body bytes sent.
    pub bytes_sent: u64,
    /// The `Referer` field.
    pub referer: Option<String>,
    /// The `User-Agent` field.
    pub user_agent: Option<String>,
    /// Head arrival to the last response byte.
    pub duration: Duration,
    /// Whether the connection used TLS.
    pub tls: bool,
    /// The protocol of an accepted upgrade (`websocket`, ...): then the
    /// line is written when the tunnel ends, and `bytes_sent` counts the
    /// tunnel's bytes to the client.
    pub upgrade: Option<String>,
    /// Tunnel bytes received from the client (upgraded requests only).
    pub bytes_received: Option<u64>,
}

/// The access log writer.
#[derive(Debug)]
pub struct AccessLog {
    format: AccessLogFormat,
    target: AccessLogTarget,
    file: Mutex<Option<File>>,
}

impl AccessLog {
    /// Opens the target (a file is created if missing). `None` for
    /// [`AccessLogTarget::Off`].
    pub fn open(
        format: AccessLogFormat,
        target: &AccessLogTarget,
    ) -> std::io::Result<Option<AccessLog>> {
        let file = match target {
            AccessLogTarget::Off => return Ok(None),
            AccessLogTarget::File(p) => Some(open_append(p)?),
            _ => None,
        };
        Ok(Some(AccessLog {
            format,
            target: target.clone(),
            file: Mutex::new(file),
        }))
    }

    /// Reopens a file target (after rotation). Keeps the old file on error.
    pub fn reopen(&self) -> std::io::Result<()> {
        if let AccessLogTarget::File(p) = &self.target {
            let f = open_append(p)?;
            *self.file.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
        }
        Ok(())
    }

    /// Writes one line.
    pub fn log(&self, r: &AccessRecord) {
        thread_local! {
            // One line buffer per thread, reused: no allocation per line.
            static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            match self.format {
                AccessLogFormat::Combined => combined(r, &mut line),
                AccessLogFormat::Json => line.extend_from_slice(json(r).as_bytes()),
            }
            line.push(b'\n');
            self.write(&line);
        })
    }

    fn write(&self, line: &[u8]) {
        let result = match &self.target {
            AccessLogTarget::Off => Ok(()),
            AccessLogTarget::Stderr => std::io::stderr().lock().write_all(line),
            AccessLogTarget::Stdout => std::io::stdout().lock().write_all(line),
            AccessLogTarget::File(_) => {
                let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
                match f.as_mut() {
                    Some(f) => f.write_all(line),
                    None => Ok(()),
                }
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "writing the access log failed");
        }
    }
}

fn open_append(p: &std::path::Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(p)
}

/// Whether no byte of `s` needs escaping (see [`escape_nginx`]), eight
/// bytes per step: the fields logged (target, referer, user agent) are
/// almost always plain, and this check runs over each on every request.
fn all_plain(s: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // Non-zero when some byte of `x` is zero (exact as to whether any is).
    let zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    // Non-zero when some byte of `x` is below 0x20, 0x7f or above, `"` or
    // `\`. For bytes under 0x80, adding 0x60 carries into the high bit
    // exactly from 0x20 up, and adding 0x01 exactly from 0x7f up; no
    // addition carries into the next byte.
    let bad = |x: u64| {
        let high = x & HI;
        let low = x & !HI;
        let control = !(low + LO * 0x60) & HI;
        let del = (low + LO) & HI;
        high | control | del | zero(x ^ (LO * u64::from(b'"'))) | zero(x ^ (LO * u64::from(b'\\')))
    };
    let mut words = s.chunks_exact(8);
    let mut found = 0;
    for w in &mut words {
        found |= bad(u64::from_le_bytes(w.try_into().expect("8 bytes")));
    }
    found == 0 && words.remainder().iter().all(|&b| plain(b))
}

/// A byte nginx logs as itself.
fn plain(b: u8) -> bool {
    b != b'"' && b != b'\\' && (0x20..0x7f).contains(&b)
}

/// nginx escapes `"`, `\\` and bytes outside printable ASCII as `\xHH`.
fn escape_nginx(out: &mut Vec<u8>, s: &str) {
    if all_plain(s.as_bytes()) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if plain(b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        }
    }
}

/// `02/Dec/2026:07:44:29 +0000` for `t`, formatted once per second per
/// thread.
fn push_local_time(out: &mut Vec<u8>, t: SystemTime) {
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let (y, mo, d, h, mi, se, _) = civil(t);
            const MONTHS: [&str; 12] = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            c.1.clear();
            let _ = write!(
                c.1,
                "{d:02}/{}/{y}:{h:02}:{mi:02}:{se:02} +0000",
                MONTHS[(mo - 1) as usize]
            );
            c.0 = secs;
        }
        out.extend_from_slice(c.1.as_bytes());
    })
}

/// nginx's `combined` line for `r` (without the newline), appended to `s`.
fn combined(r: &AccessRecord, s: &mut Vec<u8>) {
    let mut num = itoa::Buffer::new();
    crate::environ::cgi::push_ip(s, r.client.ip());
    s.extend_from_slice(b" - - [");
    push_local_time(s, r.time);
    s.extend_from_slice(b"] \"");
    escape_nginx(s, &r.method);
    s.push(b' ');
    escape_nginx(s, &r.target);
    s.push(b' ');
    s.extend_from_slice(r.version.as_bytes());
    s.extend_from_slice(b"\" ");
    s.extend_from_slice(num.format(r.status).as_bytes());
    s.push(b' ');
    s.extend_from_slice(num.format(r.bytes_sent).as_bytes());
    s.extend_from_slice(b" \"");
    escape_nginx(s, r.referer.as_deref().unwrap_or("-"));
    s.extend_from_slice(b"\" \"");
    escape_nginx(s, r.user_agent.as_deref().unwrap_or("-"));
    s.push(b'"');
}

fn json(r: &AccessRecord) -> String {
    let (y, mo, d, h, mi, se, ms) = civil(r.time);
    let v = serde_json::json!({
        "time": format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}.{ms:03}Z"),
        "remote_addr": r.client.ip().to_string(),
        "remote_port": r.client.port(),
        "method": r.method,
        "uri": r.target,
        "protocol": r.version,
        "status": r.status,
        "bytes_sent": r.bytes_sent,
        "referer": r.referer,
        "user_agent": r.user_agent,
        "request_time": r.duration.as_secs_f64(),
        "tls": r.tls,
        "upgrade": r.upgrade,
        "bytes_received": r.bytes_received,
    });
    v.to_string()
}

/// UTC calendar fields of `t`: year, month, day, hour, minute, second,
/// millisecond. Howard Hinnant's `civil_from_days`; written out (a dozen
/// lines) rather than pulling a date crate in for two log formats.
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-at-a-time check agrees with the byte one: every byte value
    /// at every position of plain strings of every length up to 24 (the
    /// words and the tail).
    #[test]
    fn all_plain_matches_the_byte_check() {
        for len in 1..=24usize {
            let mut s = vec![b'a'; len];
            assert!(all_plain(&s));
            for at in 0..len {
                for b in 0..=255u8 {
                    s[at] = b;
                    assert_eq!(all_plain(&s), plain(b), "byte {b:#04x} at {at} of {len}");
                }
                s[at] = b'~';
            }
        }
        assert!(all_plain(b""));
    }

    fn record() -> AccessRecord {
        AccessRecord {
            client: "203.0.113.9:4000".parse().unwrap(),
            // 2026-12-02T07:44:29.120Z
            time: UNIX_EPOCH + Duration::from_millis(1_796_197_469_120),
            method: "GET".into(),
            target: "/a?b=\"1\"".into(),
            version: "HTTP/1.1",
            status: 200,
            bytes_sent: 512,
            referer: None,
            user_agent: Some("curl/8.5.0".into()),
            duration: Duration::from_millis(3),
            tls: false,
            upgrade: None,
            bytes_received: None,
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(UNIX_EPOCH), (1970, 1, 1, 0, 0, 0, 0));
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(civil(leap), (2000, 2, 29, 0, 0, 0, 0));
        assert_eq!(civil(record().time), (2026, 12, 2, 7, 44, 29, 120));
    }

    #[test]
    fn combined_matches_nginx() {
        let line = |r: &AccessRecord| {
            let mut out = Vec::new();
            combined(r, &mut out);
            String::from_utf8(out).unwrap()
        };
        let mut odd = record();
        odd.user_agent = Some("caf\u{e9} \\ bot".into());
        odd.client = "[2001:db8::1]:443".parse().unwrap();
        assert_eq!(
            line(&odd),
            "2001:db8::1 - - [02/Dec/2026:07:44:29 +0000] \"GET /a?b=\\x221\\x22 HTTP/1.1\" 200 512 \"-\" \"caf\\xC3\\xA9 \\x5C bot\""
        );
        assert_eq!(
            line(&record()),
            "203.0.113.9 - - [02/Dec/2026:07:44:29 +0000] \"GET /a?b=\\x221\\x22 HTTP/1.1\" 200 512 \"-\" \"curl/8.5.0\""
        );
    }

    #[test]
    fn json_is_one_object() {
        let v: serde_json::Value = serde_json::from_str(&json(&record())).unwrap();
        assert_eq!(v["time"], "2026-12-02T07:44:29.120Z");
        assert_eq!(v["status"], 200);
        assert_eq!(v["uri"], "/a?b=\"1\"");
        assert_eq!(v["referer"], serde_json::Value::Null);
    }
}
