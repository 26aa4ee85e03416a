//! What the front itself answers: the downstream response body type and
//! small plain-text responses (errors, redirects).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

use crate::client::BoxError;

/// The response body the front sends downstream.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A small plain-text answer from the front itself.
pub(crate) fn error_response(status: StatusCode, detail: &str) -> Response<ProxyBody> {
    let text = format!(
        "{} {}\n{detail}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut r = Response::new(full(Bytes::from(text)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A body of known bytes.
pub(crate) fn full(b: Bytes) -> ProxyBody {
    Full::new(b).map_err(|e| match e {}).boxed_unsync()
}
