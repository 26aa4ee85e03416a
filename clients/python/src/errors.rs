//! Python exceptions raised by the native code. The classes live in
//! `uwire/errors.py` (so they can inherit from several builtins); this file
//! looks them up once and builds instances.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

fn class<'py>(py: Python<'py>, name: &str) -> Bound<'py, PyType> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module = MODULE
        .get_or_try_init(py, || py.import("uwire.errors").map(Bound::unbind))
        .expect("uwire.errors is part of the package");
    module
        .bind(py)
        .getattr(name)
        .and_then(|c| c.cast_into::<PyType>().map_err(Into::into))
        .expect("every exception class named here exists in uwire.errors")
}

/// An instance of `uwire.errors.<name>(msg)`.
pub(crate) fn new(py: Python<'_>, name: &str, msg: impl Into<String>) -> PyErr {
    PyErr::from_type(class(py, name), msg.into())
}

/// A failed `wsgi.input` read: `RequestBodyTooLarge` or `ClientDisconnected`.
pub(crate) fn body_error(py: Python<'_>, too_large: bool, msg: &str) -> PyErr {
    let name = if too_large {
        "RequestBodyTooLarge"
    } else {
        "ClientDisconnected"
    };
    new(py, name, msg)
}

/// The exception class for a `uwire::client::Error`, mirroring its kinds.
pub(crate) fn client_error(py: Python<'_>, e: &uwire::client::Error) -> PyErr {
    let status = e.status_code().as_u16();
    let name = if e.is_timeout() {
        "Timeout"
    } else if e.is_connect() {
        "ConnectError"
    } else if e.is_refused() {
        "StreamRefused"
    } else if e.is_reset() {
        if status == 413 {
            "BodyTooLarge"
        } else {
            "StreamReset"
        }
    } else if e.is_protocol() {
        "ProtocolError"
    } else if e.is_closed() {
        "ConnectionClosed"
    } else if e.is_no_upstream() {
        "NoUpstream"
    } else if e.is_invalid_request() {
        "InvalidRequest"
    } else if status == 413 {
        "BodyTooLarge"
    } else if status == 431 {
        "HeadTooLarge"
    } else {
        "ClientError"
    };
    let err = new(py, name, e.to_string());
    let value = err.value(py);
    let _ = value.setattr("reason", e.reason().map(|r| r.0));
    let _ = value.setattr("status_code", status);
    err
}
