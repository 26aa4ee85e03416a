//! `uwire._native`: the Rust half of the `uwire` Python package.
//!
//! * a WSGI runtime ([`worker::serve`]): each worker process runs the
//!   crate's `uwire::server::Server` (uwire/1 and classic uwsgi on one
//!   socket, environ, limits, deadline, drain) with the WSGI app as its
//!   handler, on a fixed pool of Python threads;
//! * what the master needs: listening sockets ([`bind::BoundSocket`]), the
//!   shared worker table ([`table::SharedTable`]) and the HTTP front
//!   ([`front::run_front`]);
//! * the IPC client ([`client`]), on `uwire::client`.
//!
//! Every Rust item here is private (the module's API is Python's), so these
//! docs are built with `cargo doc --document-private-items`, as `.ci/run`
//! does, and the crate's own links may name private items.

#![allow(rustdoc::private_intra_doc_links)]

mod asgi;
mod bind;
mod client;
mod errors;
mod front;
mod log;
mod signals;
mod table;
mod worker;
mod wsgi;

/// mimalloc for the module's own (Rust) allocations; Python's objects stay
/// with Python's allocator. glibc's malloc cost a WSGI worker about 6,000
/// instructions a request (12-14% of all it did, the app included;
/// `scripts/bench-cost python`), much of it consolidating its free lists.
#[global_allocator]
static ALLOC: uwire::alloc::Mi = uwire::alloc::Mi;

use bytes::Bytes;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use uwire::environ::EnvironConfig;
use uwire::frame::{HeaderBlock, HttpVersion, RequestHead};

fn latin1_bytes(s: &str) -> PyResult<Bytes> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()
        .map(Bytes::from)
        .ok_or_else(|| PyValueError::new_err(format!("{s:?} is not latin-1")))
}

fn pairs(v: Option<Bound<'_, PyAny>>) -> PyResult<Vec<(Bytes, Bytes)>> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let list: Vec<Vec<String>> = v.extract()?;
    list.iter()
        .map(|pair| match pair.as_slice() {
            [n, v] => Ok((latin1_bytes(n)?, latin1_bytes(v)?)),
            _ => Err(PyValueError::new_err("expected [name, value] pairs")),
        })
        .collect()
}

/// Builds the WSGI environ dict of a request head, exactly as a live
/// request gets it (the crate's environ rules, then the same conversion to
/// Python strings). `head` and `config` use the field names of the shared
/// vectors (`tests/vectors/environ.json`). Raises `ValueError(class)` for a
/// head the runtime would answer with 400.
#[pyfunction]
fn build_environ<'py>(
    py: Python<'py>,
    head: &Bound<'py, PyDict>,
    config: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyDict>> {
    let s = |k: &str| -> PyResult<Bytes> {
        match head.get_item(k)? {
            Some(v) if !v.is_none() => latin1_bytes(&v.extract::<String>()?),
            _ => Ok(Bytes::new()),
        }
    };
    let version = match head
        .get_item("version")?
        .map(|v| v.extract::<String>())
        .transpose()?
        .as_deref()
    {
        Some("HTTP_1_0") => HttpVersion::HTTP_10,
        Some("HTTP_2") => HttpVersion::HTTP_2,
        Some("HTTP_3") => HttpVersion::HTTP_3,
        Some("HTTP_0_9") => HttpVersion::HTTP_09,
        _ => HttpVersion::HTTP_11,
    };
    let headers = HeaderBlock::try_from_pairs(pairs(head.get_item("headers")?)?)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let params = HeaderBlock::try_from_pairs(pairs(head.get_item("params")?)?)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let query = match head.get_item("query")? {
        Some(q) if !q.is_none() => Some(latin1_bytes(&q.extract::<String>()?)?),
        _ => None,
    };
    let get_u = |k: &str| -> PyResult<Option<u64>> {
        match head.get_item(k)? {
            Some(v) if !v.is_none() => Ok(Some(v.extract()?)),
            _ => Ok(None),
        }
    };
    let rh = RequestHead {
        method: s("method")?,
        scheme: s("scheme")?,
        authority: s("authority")?,
        path: s("path")?,
        query,
        version,
        headers,
        client_addr: s("client_addr")?,
        client_port: get_u("client_port")?.unwrap_or(0) as u16,
        server_name: s("server_name")?,
        server_port: get_u("server_port")?.unwrap_or(0) as u16,
        tls: head
            .get_item("tls")?
            .map(|v| v.extract::<bool>())
            .transpose()?
            .unwrap_or(false),
        params,
        body_length: get_u("body_length")?,
        upgrade: None,
    };
    let mut cfg = EnvironConfig::default();
    if let Some(v) = config.get_item("script_name")? {
        cfg.script_name(latin1_bytes(&v.extract::<String>()?)?);
    }
    if let Some(v) = config.get_item("allow_underscore_headers")? {
        cfg.allow_underscore_headers(v.extract()?);
    }
    if let Some(v) = config.get_item("default_server_name")? {
        cfg.default_server_name(latin1_bytes(&v.extract::<String>()?)?);
    }
    if let Some(v) = config.get_item("default_server_port")? {
        cfg.default_server_port = v.extract()?;
    }
    if let Some(v) = config.get_item("server_software")? {
        cfg.server_software = latin1_bytes(&v.extract::<String>()?)?;
    }
    if let Some(v) = config.get_item("max_size")? {
        cfg.max_size = v.extract()?;
    }
    let env = uwire::environ::build(&rh, &cfg).map_err(|e| PyValueError::new_err(e.class()))?;
    let consts = wsgi::WsgiConstants {
        version: PyTuple::new(py, [1, 0])?.unbind(),
        errors: Py::new(py, wsgi::ErrorStream::new())?.into_any(),
        file_wrapper: py.get_type::<wsgi::FileWrapper>().into_any().unbind(),
        multithread: false,
        multiprocess: false,
    };
    wsgi::environ_for_test(py, &env, &consts)
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<bind::BoundSocket>()?;
    m.add_class::<asgi::Bridge>()?;
    m.add_class::<asgi::HttpExchange>()?;
    m.add_class::<asgi::WsExchange>()?;
    m.add_class::<table::SharedTable>()?;
    m.add_class::<wsgi::Input>()?;
    m.add_class::<wsgi::ErrorStream>()?;
    m.add_class::<wsgi::FileWrapper>()?;
    m.add_class::<wsgi::StartResponse>()?;
    m.add_class::<wsgi::Write>()?;
    m.add_class::<client::Client>()?;
    m.add_class::<client::Response>()?;
    m.add_class::<client::BodySender>()?;
    m.add_class::<client::Abort>()?;
    m.add_function(wrap_pyfunction!(worker::serve, m)?)?;
    m.add_function(wrap_pyfunction!(front::run_front, m)?)?;
    m.add_function(wrap_pyfunction!(log::init_logging, m)?)?;
    m.add_function(wrap_pyfunction!(build_environ, m)?)?;
    Ok(())
}
