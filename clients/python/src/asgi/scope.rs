//! The ASGI connection scope (`http` or `websocket`), built from the same
//! head and environ as the WSGI environ (so `SCRIPT_NAME`/`--root-path`,
//! the client and server addresses and the scheme follow the same rules).

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use uwire::environ::Environ;
use uwire::frame::RequestHead;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `scope` for `kind` (`"http"` or `"websocket"`).
pub(crate) fn build<'py>(
    py: Python<'py>,
    kind: &str,
    head: &RequestHead,
    env: &Environ,
    root_path: Option<&Bytes>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(pyo3::intern!(py, "type"), PyString::intern(py, kind))?;
    let asgi = PyDict::new(py);
    asgi.set_item("version", "3.0")?;
    asgi.set_item("spec_version", "2.4")?;
    d.set_item(pyo3::intern!(py, "asgi"), asgi)?;
    let proto = env.get("SERVER_PROTOCOL").unwrap_or(b"HTTP/1.1");
    let version = proto.strip_prefix(b"HTTP/").unwrap_or(b"1.1");
    d.set_item(pyo3::intern!(py, "http_version"), text(version))?;
    let tls = env.get("HTTPS").is_some_and(|v| v == b"on");
    let scheme = env
        .get("REQUEST_SCHEME")
        .unwrap_or(if tls { b"https" } else { b"http" });
    let scheme = if kind == "websocket" {
        if scheme == b"https" {
            "wss".to_string()
        } else {
            "ws".to_string()
        }
    } else {
        text(scheme)
    };
    d.set_item(pyo3::intern!(py, "scheme"), scheme)?;
    if kind == "http" {
        d.set_item(pyo3::intern!(py, "method"), text(&head.method))?;
    }
    let script = env.get("SCRIPT_NAME").unwrap_or(b"");
    let path_info = env.get("PATH_INFO").unwrap_or(b"");
    // ASGI: `path` includes `root_path` (as uvicorn and Starlette expect).
    let mut path = Vec::with_capacity(script.len() + path_info.len());
    path.extend_from_slice(script);
    path.extend_from_slice(path_info);
    d.set_item(pyo3::intern!(py, "path"), text(&path))?;
    d.set_item(pyo3::intern!(py, "raw_path"), PyBytes::new(py, &head.path))?;
    d.set_item(
        pyo3::intern!(py, "query_string"),
        PyBytes::new(py, head.query.as_deref().unwrap_or(b"")),
    )?;
    let root = if script.is_empty() {
        root_path.map(|b| b.as_ref()).unwrap_or(b"")
    } else {
        script
    };
    d.set_item(pyo3::intern!(py, "root_path"), text(root))?;
    let headers = PyList::empty(py);
    for (n, v) in head.headers.iter() {
        let name = n.to_ascii_lowercase();
        headers.append(PyTuple::new(
            py,
            [PyBytes::new(py, &name), PyBytes::new(py, v)],
        )?)?;
    }
    if head.headers.get(b"host").is_none() && !head.authority.is_empty() {
        headers.append(PyTuple::new(
            py,
            [PyBytes::new(py, b"host"), PyBytes::new(py, &head.authority)],
        )?)?;
    }
    d.set_item(pyo3::intern!(py, "headers"), headers)?;
    let port = |k: &str| -> u16 {
        env.get(k)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    match env.get("REMOTE_ADDR") {
        Some(a) if !a.is_empty() => {
            d.set_item(pyo3::intern!(py, "client"), (text(a), port("REMOTE_PORT")))?;
        }
        _ => d.set_item(pyo3::intern!(py, "client"), py.None())?,
    }
    match env.get("SERVER_NAME") {
        Some(s) if !s.is_empty() => {
            d.set_item(pyo3::intern!(py, "server"), (text(s), port("SERVER_PORT")))?;
        }
        _ => d.set_item(pyo3::intern!(py, "server"), py.None())?,
    }
    if kind == "websocket" {
        let protocols = PyList::empty(py);
        for v in head.headers.get_all(b"sec-websocket-protocol") {
            for p in v.split(|b| *b == b',') {
                let p = p.trim_ascii();
                if !p.is_empty() {
                    protocols.append(text(p))?;
                }
            }
        }
        d.set_item(pyo3::intern!(py, "subprotocols"), protocols)?;
    }
    Ok(d)
}
