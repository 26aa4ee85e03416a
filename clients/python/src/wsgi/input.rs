//! `wsgi.input`: the request body as a file-like object. Reads stream from
//! the connection as the app asks (flow-control credit goes back to the
//! proxy only as it reads), block with the GIL released, and show EOF at
//! the body's end (`wsgi.input_terminated`).

use std::sync::{Mutex, MutexGuard};

use bytes::{Buf, BytesMut};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use uwire::server::{Body, BodyError};

use crate::errors;

struct State {
    body: Option<Body>,
    buf: BytesMut,
    eof: bool,
    /// The error that ended the body, kept for the runtime (413, or the
    /// peer gone) once the app gives up.
    failed: Option<BodyError>,
    /// Set once a read failed: later reads raise the same.
    failure: Option<(bool, String)>,
}

/// The `wsgi.input` stream.
#[pyclass(frozen, module = "uwire._native")]
pub struct Input {
    state: Mutex<State>,
    handle: tokio::runtime::Handle,
}

impl Input {
    pub(crate) fn new(body: Body, handle: tokio::runtime::Handle) -> Input {
        // A body known to be empty is never waited for: reads see its end
        // at once (and on the I/O thread, which runs bodiless requests
        // itself, no read may wait).
        let ended = http_body::Body::is_end_stream(&body);
        Input {
            state: Mutex::new(State {
                body: (!ended).then_some(body),
                buf: BytesMut::new(),
                eof: ended,
                failed: None,
                failure: None,
            }),
            handle,
        }
    }

    /// The error a failed read met, taken (once).
    pub(crate) fn take_failure(&self) -> Option<BodyError> {
        self.state.lock().ok()?.failed.take()
    }

    fn lock(&self) -> PyResult<MutexGuard<'_, State>> {
        self.state.try_lock().map_err(|_| {
            PyRuntimeError::new_err("wsgi.input is being read by another thread at the same time")
        })
    }

    /// Reads the next chunk into the buffer; `false` at the end.
    fn fill(&self, py: Python<'_>, st: &mut State) -> PyResult<bool> {
        if let Some((too_large, msg)) = &st.failure {
            return Err(errors::body_error(py, *too_large, msg));
        }
        if st.eof {
            return Ok(false);
        }
        let Some(body) = st.body.as_mut() else {
            st.eof = true;
            return Ok(false);
        };
        let handle = &self.handle;
        let next = py.detach(|| handle.block_on(body.data()));
        match next {
            None => {
                st.eof = true;
                st.body = None;
                Ok(false)
            }
            Some(Ok(chunk)) => {
                st.buf.extend_from_slice(&chunk);
                Ok(true)
            }
            Some(Err(e)) => {
                let too_large = matches!(e, BodyError::TooLarge { .. });
                let msg = e.to_string();
                st.failure = Some((too_large, msg.clone()));
                st.failed = Some(e);
                st.body = None;
                Err(errors::body_error(py, too_large, &msg))
            }
        }
    }

    fn take<'py>(py: Python<'py>, st: &mut State, n: usize) -> Bound<'py, PyBytes> {
        let n = n.min(st.buf.len());
        let out = PyBytes::new(py, &st.buf[..n]);
        st.buf.advance(n);
        out
    }

    fn readline_locked<'py>(
        &self,
        py: Python<'py>,
        st: &mut State,
        limit: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut scanned = 0;
        loop {
            let window = match limit {
                Some(l) => st.buf.len().min(l),
                None => st.buf.len(),
            };
            if let Some(i) = memchr(b'\n', &st.buf[scanned..window]) {
                return Ok(Self::take(py, st, scanned + i + 1));
            }
            if limit.is_some_and(|l| st.buf.len() >= l) {
                return Ok(Self::take(py, st, window));
            }
            scanned = window;
            if !self.fill(py, st)? {
                let n = st.buf.len();
                return Ok(Self::take(py, st, n));
            }
        }
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|b| *b == needle)
}

fn size_arg(size: Option<isize>) -> Option<usize> {
    match size {
        Some(n) if n >= 0 => Some(n as usize),
        _ => None,
    }
}

#[pymethods]
impl Input {
    /// Reads up to `size` bytes (all of the rest when `size` is negative or
    /// omitted), blocking until that many have arrived or the body ends.
    #[pyo3(signature = (size=None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let mut st = self.lock()?;
        match size_arg(size) {
            Some(n) => {
                while st.buf.len() < n && self.fill(py, &mut st)? {}
                Ok(Self::take(py, &mut st, n))
            }
            None => {
                while self.fill(py, &mut st)? {}
                let n = st.buf.len();
                Ok(Self::take(py, &mut st, n))
            }
        }
    }

    /// Reads one line (up to and including `\n`), at most `size` bytes.
    #[pyo3(signature = (size=None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let mut st = self.lock()?;
        self.readline_locked(py, &mut st, size_arg(size))
    }

    /// Reads lines until the end, or until `hint` bytes have been read.
    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<isize>) -> PyResult<Bound<'py, PyList>> {
        let mut st = self.lock()?;
        let out = PyList::empty(py);
        let hint = size_arg(hint).filter(|h| *h > 0);
        let mut total = 0;
        loop {
            let line = self.readline_locked(py, &mut st, None)?;
            let n = line.as_bytes().len();
            if n == 0 {
                break;
            }
            out.append(line)?;
            total += n;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(out)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let mut st = self.lock()?;
        let line = self.readline_locked(py, &mut st, None)?;
        Ok((!line.as_bytes().is_empty()).then_some(line))
    }

    /// Always true.
    fn readable(&self) -> bool {
        true
    }
}
