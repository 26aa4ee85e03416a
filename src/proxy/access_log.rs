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
//! appending; [`AccessLog::reopen`] reopens the file after log rotation
//! (`uwire proxy` calls it on SIGHUP).
//!
//! By default each line is written at once, one `write` per request (as
//! nginx does without `buffer=`). With a buffer ([`AccessLog::open`]'s
//! `buffer`, `--access-log-buffer`), lines are kept in memory and written
//! together once the buffer is full, when a line has waited `flush`
//! (a background thread looks at every `flush`), before a reopen and when
//! the log is dropped: nginx's `buffer=` and `flush=`. At 100k requests a
//! second that is a few hundred system calls instead of 100k; what it costs
//! is that a line appears up to `flush` late, and that the lines still in
//! memory are lost if the process is killed (`SIGKILL`, a crash).

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default of the longest time a buffered line waits (nginx's `flush=`).
pub const DEFAULT_ACCESS_LOG_FLUSH: Duration = Duration::from_secs(1);
/// Largest access log buffer accepted.
pub const MAX_ACCESS_LOG_BUFFER: usize = 16 << 20;

/// Checks a buffer size and flush interval for [`AccessLog::open`] (also
/// `ProxyConfig::validate`'s check): at most [`MAX_ACCESS_LOG_BUFFER`]
/// bytes, and an interval above zero when buffered. Says which is wrong.
pub fn check_buffering(buffer: usize, flush: Duration) -> Result<(), String> {
    if buffer > MAX_ACCESS_LOG_BUFFER {
        return Err(format!(
            "access_log_buffer must be at most {MAX_ACCESS_LOG_BUFFER} bytes"
        ));
    }
    if buffer > 0 && flush.is_zero() {
        return Err("access_log_flush must be above zero with an access_log_buffer".into());
    }
    Ok(())
}

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
    pub method: http::Method,
    /// The request target as received (HTTP/2: its path and query; the
    /// `:scheme` and `:authority` are not part of the request line).
    pub target: http::Uri,
    /// `HTTP/1.1`, `HTTP/2.0`, ...
    pub version: &'static str,
    /// The status sent.
    pub status: u16,
    /// Response body bytes sent.
    pub bytes_sent: u64,
    /// The `Referer` field.
    pub referer: Option<http::HeaderValue>,
    /// The `User-Agent` field.
    pub user_agent: Option<http::HeaderValue>,
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
    /// Bytes of lines kept before they are written; 0: each line at once.
    buffer: usize,
    /// The lines kept (buffered mode).
    pending: Mutex<Vec<u8>>,
}

impl AccessLog {
    /// Opens the target (a file is created if missing). `None` for
    /// [`AccessLogTarget::Off`].
    ///
    /// `buffer` 0 writes each line at once. Above 0 (at most
    /// [`MAX_ACCESS_LOG_BUFFER`]), lines are written together once
    /// `buffer` bytes are pending, and no later than `flush` (which must
    /// then be above zero) after the first of them: a thread named
    /// `uwire-access-log` checks every `flush` and ends once the log is
    /// dropped. See the module docs.
    pub fn open(
        format: AccessLogFormat,
        target: &AccessLogTarget,
        buffer: usize,
        flush: Duration,
    ) -> std::io::Result<Option<Arc<AccessLog>>> {
        check_buffering(buffer, flush)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let file = match target {
            AccessLogTarget::Off => return Ok(None),
            AccessLogTarget::File(p) => Some(open_append(p)?),
            _ => None,
        };
        let log = Arc::new(AccessLog {
            format,
            target: target.clone(),
            file: Mutex::new(file),
            buffer,
            pending: Mutex::new(Vec::new()),
        });
        if buffer > 0 {
            let weak = Arc::downgrade(&log);
            std::thread::Builder::new()
                .name("uwire-access-log".into())
                .spawn(move || flusher(&weak, flush))?;
        }
        Ok(Some(log))
    }

    /// Writes the lines kept in buffered mode now.
    pub fn flush(&self) {
        if self.buffer == 0 {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !pending.is_empty() {
            self.write(&pending);
            pending.clear();
        }
    }

    /// Reopens a file target (after rotation), once the lines kept have
    /// gone to the old file. Keeps the old file on error.
    pub fn reopen(&self) -> std::io::Result<()> {
        self.flush();
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
            if self.buffer == 0 {
                self.write(&line);
                return;
            }
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.capacity() == 0 {
                // Once, at the first line: the buffer then stays.
                pending.reserve_exact(self.buffer + 1024);
            }
            pending.extend_from_slice(&line);
            if pending.len() >= self.buffer {
                self.write(&pending);
                pending.clear();
            }
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

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The buffered mode's background flush: every `every`, writes what is
/// pending, until the log is gone.
fn flusher(log: &Weak<AccessLog>, every: Duration) {
    loop {
        std::thread::sleep(every);
        match log.upgrade() {
            Some(log) => log.flush(),
            None => return,
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
fn escape_nginx(out: &mut Vec<u8>, s: &[u8]) {
    if all_plain(s) {
        out.extend_from_slice(s);
        return;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
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
    escape_nginx(s, r.method.as_str().as_bytes());
    s.push(b' ');
    escape_nginx(s, target_text(r).as_bytes());
    s.push(b' ');
    s.extend_from_slice(r.version.as_bytes());
    s.extend_from_slice(b"\" ");
    s.extend_from_slice(num.format(r.status).as_bytes());
    s.push(b' ');
    s.extend_from_slice(num.format(r.bytes_sent).as_bytes());
    s.extend_from_slice(b" \"");
    escape_nginx(s, r.referer.as_ref().map_or(b"-", |v| v.as_bytes()));
    s.extend_from_slice(b"\" \"");
    escape_nginx(s, r.user_agent.as_ref().map_or(b"-", |v| v.as_bytes()));
    s.push(b'"');
}

/// The request target as the request line had it: the path and query of
/// an origin-form target (HTTP/1.1's usual) or of any HTTP/2 request,
/// borrowed; else the target whole (`*`, `host:port`, an absolute URI),
/// formatted.
fn target_text(r: &AccessRecord) -> std::borrow::Cow<'_, str> {
    let uri = &r.target;
    let origin = r.version == "HTTP/2.0" || (uri.scheme().is_none() && uri.authority().is_none());
    match uri.path_and_query() {
        Some(p) if origin => p.as_str().into(),
        _ => uri.to_string().into(),
    }
}

/// A header field's value as text (invalid UTF-8 replaced).
fn field_text(v: &Option<http::HeaderValue>) -> Option<String> {
    v.as_ref()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn json(r: &AccessRecord) -> String {
    let (y, mo, d, h, mi, se, ms) = civil(r.time);
    let v = serde_json::json!({
        "time": format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}.{ms:03}Z"),
        "remote_addr": r.client.ip().to_string(),
        "remote_port": r.client.port(),
        "method": r.method.as_str(),
        "uri": target_text(r),
        "protocol": r.version,
        "status": r.status,
        "bytes_sent": r.bytes_sent,
        "referer": field_text(&r.referer),
        "user_agent": field_text(&r.user_agent),
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
            method: http::Method::GET,
            target: http::Uri::from_static("/a?b={\\1}"),
            version: "HTTP/1.1",
            status: 200,
            bytes_sent: 512,
            referer: None,
            user_agent: Some(http::HeaderValue::from_static("curl/8.5.0")),
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
        odd.user_agent = Some(http::HeaderValue::from_str("caf\u{e9} \\ bot").unwrap());
        odd.client = "[2001:db8::1]:443".parse().unwrap();
        assert_eq!(
            line(&odd),
            "2001:db8::1 - - [02/Dec/2026:07:44:29 +0000] \"GET /a?b={\\x5C1} HTTP/1.1\" 200 512 \"-\" \"caf\\xC3\\xA9 \\x5C bot\""
        );
        assert_eq!(
            line(&record()),
            "203.0.113.9 - - [02/Dec/2026:07:44:29 +0000] \"GET /a?b={\\x5C1} HTTP/1.1\" 200 512 \"-\" \"curl/8.5.0\""
        );
    }

    /// The target as the request line had it: an absolute URI whole over
    /// HTTP/1.1, its path and query over HTTP/2; `*` and `host:port` as
    /// they came. The JSON line says the same.
    #[test]
    fn targets_of_every_form() {
        let cases = [
            (
                "http://example.com/x?y",
                "HTTP/1.1",
                "http://example.com/x?y",
            ),
            ("https://example.com/x?y", "HTTP/2.0", "/x?y"),
            ("*", "HTTP/1.1", "*"),
            ("example.com:443", "HTTP/1.1", "example.com:443"),
            ("/p", "HTTP/1.0", "/p"),
        ];
        for (uri, version, want) in cases {
            let mut r = record();
            r.target = uri.parse().unwrap();
            r.version = version;
            assert_eq!(target_text(&r), want, "{uri} {version}");
            let mut line = Vec::new();
            combined(&r, &mut line);
            let line = String::from_utf8(line).unwrap();
            assert!(
                line.contains(&format!("\"GET {want} {version}\"")),
                "{line}"
            );
            let v: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
            assert_eq!(v["uri"], want, "{uri} {version}");
        }
    }

    fn lines_in(p: &std::path::Path) -> usize {
        std::fs::read_to_string(p).map_or(0, |s| s.lines().count())
    }

    /// Buffered lines are written when the buffer fills, on `flush`, before
    /// a reopen (to the old file) and when the log is dropped; never one
    /// lost, never one twice.
    #[test]
    fn buffered_lines_are_written_full_flushed_reopened_and_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let target = AccessLogTarget::File(path.clone());
        let one = {
            let mut l = Vec::new();
            combined(&record(), &mut l);
            l.len() + 1
        };
        // Room for three lines: the third fills it.
        let log = AccessLog::open(
            AccessLogFormat::Combined,
            &target,
            3 * one,
            Duration::from_secs(3600),
        )
        .unwrap()
        .unwrap();
        log.log(&record());
        log.log(&record());
        assert_eq!(lines_in(&path), 0, "two lines wait");
        log.log(&record());
        assert_eq!(lines_in(&path), 3, "the third filled the buffer");
        log.log(&record());
        assert_eq!(lines_in(&path), 3);
        log.flush();
        assert_eq!(lines_in(&path), 4, "flush writes what waits");
        log.flush();
        assert_eq!(lines_in(&path), 4, "and nothing twice");

        log.log(&record());
        let rotated = dir.path().join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen().unwrap();
        assert_eq!(
            lines_in(&rotated),
            5,
            "the waiting line went to the old file"
        );
        log.log(&record());
        assert_eq!(lines_in(&path), 0);
        drop(log);
        assert_eq!(lines_in(&path), 1, "dropping the log writes what waits");
    }

    /// A buffered line is written by the background thread within the
    /// flush interval, without more lines or a call; the thread ends with
    /// the log.
    #[test]
    fn buffered_lines_are_flushed_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let target = AccessLogTarget::File(path.clone());
        let log = AccessLog::open(
            AccessLogFormat::Json,
            &target,
            1 << 20,
            Duration::from_millis(20),
        )
        .unwrap()
        .unwrap();
        let weak = Arc::downgrade(&log);
        log.log(&record());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while lines_in(&path) == 0 {
            assert!(std::time::Instant::now() < deadline, "never flushed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(lines_in(&path), 1);
        drop(log);
        // Only the flush thread may still hold it, for one flush at most.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while weak.strong_count() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the log outlived its owner"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(lines_in(&path), 1);
    }

    #[test]
    fn buffer_limits() {
        let dir = tempfile::tempdir().unwrap();
        let target = AccessLogTarget::File(dir.path().join("a.log"));
        let open =
            |buffer, flush| AccessLog::open(AccessLogFormat::Combined, &target, buffer, flush);
        assert!(open(MAX_ACCESS_LOG_BUFFER, Duration::from_secs(1)).is_ok());
        let e = open(MAX_ACCESS_LOG_BUFFER + 1, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        let e = open(1, Duration::ZERO).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        // Unbuffered, the interval is not used.
        assert!(open(0, Duration::ZERO).unwrap().is_some());
        assert!(AccessLog::open(
            AccessLogFormat::Combined,
            &AccessLogTarget::Off,
            64,
            Duration::from_secs(1)
        )
        .unwrap()
        .is_none());
    }

    #[test]
    fn json_is_one_object() {
        let v: serde_json::Value = serde_json::from_str(&json(&record())).unwrap();
        assert_eq!(v["time"], "2026-12-02T07:44:29.120Z");
        assert_eq!(v["status"], 200);
        assert_eq!(v["uri"], "/a?b={\\1}");
        assert_eq!(v["referer"], serde_json::Value::Null);
    }
}
