//! `wsgi.file_wrapper`, `wsgi.errors` and the access log.

use std::io::Write as _;
use std::os::fd::RawFd;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use pyo3::prelude::*;
use uwire::environ::Environ;

use super::response::{lock, send_chunk, Sent, Shared};

/// Largest chunk read from a wrapped file at once.
const MAX_FILE_CHUNK: usize = 256 * 1024;
/// Smallest chunk read from a wrapped file at once.
const MIN_FILE_CHUNK: usize = 64 * 1024;

/// `wsgi.file_wrapper(filelike, block_size=8192)`: an iterable over a file.
/// When the app returns one whose file has a descriptor of a regular file,
/// the server streams it from the descriptor with the GIL released, from
/// the file's current position, honouring Content-Length; otherwise it is
/// iterated like any other iterable. `close()` closes the file.
#[pyclass(frozen, module = "uwire._native")]
pub struct FileWrapper {
    filelike: Py<PyAny>,
    block_size: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, block_size=8192))]
    fn new(filelike: Py<PyAny>, block_size: usize) -> FileWrapper {
        FileWrapper {
            filelike,
            block_size: block_size.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let data = self
            .filelike
            .bind(py)
            .call_method1(pyo3::intern!(py, "read"), (self.block_size,))?;
        let empty = data.len().map(|n| n == 0).unwrap_or(true);
        Ok((!empty).then_some(data))
    }

    /// Closes the wrapped file (if it has a `close` method).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.filelike.bind(py);
        if f.hasattr(pyo3::intern!(py, "close"))? {
            f.call_method0(pyo3::intern!(py, "close"))?;
        }
        Ok(())
    }
}

impl FileWrapper {
    /// Streams the file from its descriptor. `Ok(false)` when it has none
    /// (or is not a regular file): iterate it instead.
    pub(crate) fn stream_file(&self, py: Python<'_>, p: &Shared) -> PyResult<bool> {
        let f = self.filelike.bind(py);
        let Ok(fd) = f
            .call_method0(pyo3::intern!(py, "fileno"))
            .and_then(|v| v.extract::<RawFd>())
        else {
            return Ok(false);
        };
        // SAFETY: fstat on a descriptor the file object owns; `st` is a
        // valid out-pointer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } != 0 || (st.st_mode & libc::S_IFMT) != libc::S_IFREG
        {
            return Ok(false);
        }
        // The file object's own position (a buffered reader may have read
        // ahead of the descriptor's).
        let mut pos: i64 = match f
            .call_method0(pyo3::intern!(py, "tell"))
            .and_then(|v| v.extract())
        {
            Ok(p) => p,
            Err(_) => return Ok(false),
        };
        let chunk = self.block_size.clamp(MIN_FILE_CHUNK, MAX_FILE_CHUNK);
        loop {
            if lock(p).cancelled() || lock(p).is_complete() {
                break;
            }
            let read = py.detach(|| {
                let mut buf = vec![0u8; chunk];
                // SAFETY: `buf` is writable for `chunk` bytes.
                let n =
                    unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), chunk, pos as libc::off_t) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    buf.truncate(n as usize);
                    Ok(buf)
                }
            });
            let buf = read.map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))?;
            if buf.is_empty() {
                break;
            }
            pos += buf.len() as i64;
            if send_chunk(py, p, Bytes::from(buf), false) == Sent::Gone {
                break;
            }
        }
        // Leave the file where a read would have left it.
        let _ = f.call_method1(pyo3::intern!(py, "seek"), (pos,));
        Ok(true)
    }
}

/// `wsgi.errors`: a text stream whose lines go to the worker's log.
#[pyclass(frozen, module = "uwire._native")]
pub struct ErrorStream {
    partial: Mutex<String>,
}

impl ErrorStream {
    pub(crate) fn new() -> ErrorStream {
        ErrorStream {
            partial: Mutex::new(String::new()),
        }
    }
}

#[pymethods]
impl ErrorStream {
    /// Writes `s`; complete lines are logged at once.
    fn write(&self, s: &str) -> usize {
        let mut buf = self.partial.lock().unwrap_or_else(|e| e.into_inner());
        buf.push_str(s);
        while let Some(i) = buf.find('\n') {
            let line: String = buf.drain(..=i).collect();
            tracing::error!(target: "wsgi.errors", "{}", line.trim_end_matches('\n'));
        }
        s.chars().count()
    }

    /// Writes each string of `lines`.
    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(&line?.extract::<String>()?);
        }
        Ok(())
    }

    /// Logs a pending partial line.
    fn flush(&self) {
        let mut buf = self.partial.lock().unwrap_or_else(|e| e.into_inner());
        if !buf.is_empty() {
            tracing::error!(target: "wsgi.errors", "{}", buf);
            buf.clear();
        }
    }

    fn writable(&self) -> bool {
        true
    }
}

/// One line per request: `REMOTE_ADDR - - [time] "METHOD URI PROTOCOL"
/// status bytes "referer" "user-agent" duration_us`.
pub struct AccessLog {
    out: Mutex<Box<dyn std::io::Write + Send>>,
}

impl AccessLog {
    /// Opens `path` for appending; `-` is standard error.
    pub(crate) fn open(path: &str) -> std::io::Result<AccessLog> {
        let out: Box<dyn std::io::Write + Send> = if path == "-" {
            Box::new(std::io::stderr())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )
        };
        Ok(AccessLog {
            out: Mutex::new(out),
        })
    }

    pub(crate) fn log(&self, env: &Environ, status: u16, bytes: u64, took: Duration) {
        let get = |k: &str| String::from_utf8_lossy(env.get(k).unwrap_or(b"-")).into_owned();
        let line = format!(
            "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" {}us\n",
            get("REMOTE_ADDR"),
            utc_now(),
            get("REQUEST_METHOD"),
            get("REQUEST_URI"),
            get("SERVER_PROTOCOL"),
            status,
            bytes,
            get("HTTP_REFERER"),
            get("HTTP_USER_AGENT"),
            took.as_micros()
        );
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
}

/// The current time as `2026-01-31T23:59:59Z`.
pub(crate) fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
