//! Classic uwsgi upstreams: one connection per request.

use std::sync::Arc;

use bytes::Buf;
use http_body::Body as HttpBody;

use super::error::{BoxError, Error, Kind};
use super::pool::UpstreamState;
use super::{Body, ClientConfig};
use crate::frame::RequestHead;

/// Sends one request to a classic uwsgi upstream.
pub(crate) async fn request<B>(
    _up: &Arc<UpstreamState>,
    _head: &RequestHead,
    _body: &mut Option<B>,
    _cfg: &ClientConfig,
) -> Result<http::Response<Body>, Error>
where
    B: HttpBody + Send + 'static,
    B::Data: Buf + Send,
    B::Error: Into<BoxError>,
{
    Err(Error::with(
        Kind::InvalidRequest,
        "classic uwsgi upstreams are not supported yet",
    ))
}
