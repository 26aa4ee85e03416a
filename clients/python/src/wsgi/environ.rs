//! The PEP 3333 environ dict, built from the crate's [`Environ`] (so it
//! follows the same rules and shared vectors as the Rust runtime, whether
//! the request came over uwire/1 or classic uwsgi).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use rustc_hash::FxHashMap;
use uwire::environ::Environ;

/// Interned keys, per app thread (so no lock): variable names repeat on
/// every request, and interned keys make the app's lookups cheap too.
/// Hashed with FxHash, not SipHash (SipHash cost about 2,000 instructions
/// a request here, a third of building the dict): names chosen to collide
/// cost at most a walk over the [`MAX_CACHED_KEYS`] names cached.
pub(crate) struct KeyCache {
    keys: FxHashMap<Box<[u8]>, Py<PyString>>,
}

/// More distinct variable names than this (every client can invent header
/// names) are not cached.
const MAX_CACHED_KEYS: usize = 512;

impl KeyCache {
    pub(crate) fn new() -> KeyCache {
        KeyCache {
            keys: FxHashMap::default(),
        }
    }

    fn key<'py>(&mut self, py: Python<'py>, name: &[u8]) -> PyResult<Bound<'py, PyString>> {
        if let Some(k) = self.keys.get(name) {
            return Ok(k.bind(py).clone());
        }
        let s = match std::str::from_utf8(name) {
            Ok(ascii) if name.is_ascii() => PyString::intern(py, ascii),
            _ => latin1(py, name)?,
        };
        if self.keys.len() < MAX_CACHED_KEYS {
            self.keys.insert(name.into(), s.clone().unbind());
        }
        Ok(s)
    }
}

/// A native string from environ bytes: byte `0xNN` becomes `U+00NN`
/// (PEP 3333, "native strings"). CPython's Latin-1 decoder does it in one
/// pass (a UTF-8 decode would validate, and ASCII would be checked twice).
pub(crate) fn latin1<'py>(py: Python<'py>, b: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let len = pyo3::ffi::Py_ssize_t::try_from(b.len())
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("environ value too long"))?;
    // SAFETY: `b` is a live buffer of `len` bytes; the decoder copies it
    // and returns a new reference to a str, or NULL with an exception set
    // (out of memory), which `from_owned_ptr_or_err` turns into the error.
    unsafe {
        let s = pyo3::ffi::PyUnicode_DecodeLatin1(b.as_ptr().cast(), len, std::ptr::null());
        Ok(Bound::from_owned_ptr_or_err(py, s)?.cast_into_unchecked())
    }
}

/// Fixed per-worker values of the `wsgi.*` keys.
pub(crate) struct WsgiConstants {
    pub(crate) version: Py<PyTuple>,
    pub(crate) errors: Py<PyAny>,
    pub(crate) file_wrapper: Py<PyAny>,
    pub(crate) multithread: bool,
    pub(crate) multiprocess: bool,
}

/// Builds the environ dict: the CGI variables, then the `wsgi.*` keys.
pub(crate) fn build<'py>(
    py: Python<'py>,
    env: &Environ,
    cache: &mut KeyCache,
    consts: &WsgiConstants,
    input: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let mut https = false;
    for (name, value) in env.iter() {
        if name == b"REQUEST_SCHEME" {
            https = value.eq_ignore_ascii_case(b"https");
        }
        d.set_item(cache.key(py, name)?, latin1(py, value)?)?;
    }
    d.set_item(pyo3::intern!(py, "wsgi.version"), consts.version.bind(py))?;
    d.set_item(
        pyo3::intern!(py, "wsgi.url_scheme"),
        if https {
            pyo3::intern!(py, "https")
        } else {
            pyo3::intern!(py, "http")
        },
    )?;
    d.set_item(pyo3::intern!(py, "wsgi.input"), input)?;
    d.set_item(pyo3::intern!(py, "wsgi.errors"), consts.errors.bind(py))?;
    d.set_item(pyo3::intern!(py, "wsgi.multithread"), consts.multithread)?;
    d.set_item(pyo3::intern!(py, "wsgi.multiprocess"), consts.multiprocess)?;
    d.set_item(pyo3::intern!(py, "wsgi.run_once"), false)?;
    d.set_item(pyo3::intern!(py, "wsgi.input_terminated"), true)?;
    d.set_item(
        pyo3::intern!(py, "wsgi.file_wrapper"),
        consts.file_wrapper.bind(py),
    )?;
    Ok(d)
}
