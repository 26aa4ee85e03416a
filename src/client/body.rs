//! Streaming bodies on the proxy side: the response body handed to callers,
//! and the task that pumps a caller's request body into a stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::Stream;
use http_body::{Body as HttpBody, Frame};
use http_body_util::BodyExt;

use super::error::{BoxError, Error, Kind};
use super::pool::InflightGuard;
use crate::frame::{HeaderBlock, Reason};
use crate::net::{RecvStream, SendStream};

type BoxStream = Pin<Box<dyn Stream<Item = Result<Frame<Bytes>, Error>> + Send>>;

enum Inner {
    Uwire {
        recv: RecvStream,
        trailers_sent: bool,
        /// What the stream yielded after the last data chunk, read ahead so
        /// `is_end_stream` can say "that was the last chunk" (an HTTP/2
        /// front then ends the stream on that DATA frame instead of sending
        /// an extra empty one; h2 clients budget small non-final frames).
        peeked: Option<Option<Result<Bytes, crate::net::Error>>>,
    },
    Stream(BoxStream),
    Empty,
}

/// A streaming response body. Flow-control credit goes back to the app only
/// as this body is read; dropping it before the end resets the stream
/// (`CANCEL`), which the app sees as its response being dropped.
pub struct Body {
    inner: Inner,
    _guard: Option<InflightGuard>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("uwire::client::Body")
    }
}

impl Body {
    pub(crate) fn uwire(recv: RecvStream, guard: InflightGuard) -> Body {
        Body {
            inner: Inner::Uwire {
                recv,
                trailers_sent: false,
                peeked: None,
            },
            _guard: Some(guard),
        }
    }

    pub(crate) fn from_stream(s: BoxStream, guard: Option<InflightGuard>) -> Body {
        Body {
            inner: Inner::Stream(s),
            _guard: guard,
        }
    }

    /// An empty body.
    pub fn empty() -> Body {
        Body {
            inner: Inner::Empty,
            _guard: None,
        }
    }
}

/// Converts a header block to an `http::HeaderMap`, skipping fields `http`
/// cannot represent. Values are slices of the block's buffer, not copies
/// (`from_maybe_shared` keeps a `Bytes` as it is, after the same check as
/// `from_bytes`): no allocation per value.
pub(crate) fn header_map(block: &HeaderBlock) -> http::HeaderMap {
    let mut map = http::HeaderMap::with_capacity(block.len());
    let buf = block.as_bytes();
    for (n, v) in block.iter() {
        let Ok(n) = http::HeaderName::from_bytes(n) else {
            continue;
        };
        if let Ok(v) = http::HeaderValue::from_maybe_shared(buf.slice_ref(v)) {
            map.append(n, v);
        }
    }
    map
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        match &mut this.inner {
            Inner::Empty => Poll::Ready(None),
            Inner::Stream(s) => s.as_mut().poll_next(cx),
            Inner::Uwire {
                recv,
                trailers_sent,
                peeked,
            } => {
                let polled = match peeked.take() {
                    Some(p) => Poll::Ready(p),
                    None => {
                        if recv.is_end() {
                            if !*trailers_sent {
                                *trailers_sent = true;
                                if let Some(t) = recv.trailers() {
                                    return Poll::Ready(Some(Ok(Frame::trailers(header_map(t)))));
                                }
                            }
                            return Poll::Ready(None);
                        }
                        recv.poll_data(cx)
                    }
                };
                match polled {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Some(Ok(b))) => {
                        // Look one event ahead without registering for a
                        // wake-up (the next poll_frame registers again).
                        if !recv.is_end() {
                            let mut noop = Context::from_waker(std::task::Waker::noop());
                            if let Poll::Ready(next) = recv.poll_data(&mut noop) {
                                *peeked = Some(next);
                            }
                        }
                        Poll::Ready(Some(Ok(Frame::data(b))))
                    }
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from_net(e)))),
                    Poll::Ready(None) => {
                        *trailers_sent = true;
                        match recv.trailers() {
                            Some(t) => Poll::Ready(Some(Ok(Frame::trailers(header_map(t))))),
                            None => Poll::Ready(None),
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Empty => true,
            Inner::Uwire {
                recv,
                trailers_sent,
                peeked,
            } => {
                recv.is_end()
                    && !matches!(peeked, Some(Some(_)))
                    && (*trailers_sent || recv.trailers().is_none())
            }
            Inner::Stream(_) => false,
        }
    }
}

/// Sends a caller's request body into `send` as it arrives, never holding
/// more than one chunk plus what the stream's flow control allows.
pub(crate) async fn pump<B>(body: B, mut send: SendStream)
where
    B: HttpBody + Send + 'static,
    B::Data: Buf + Send,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    loop {
        let next = body
            .frame()
            .await
            .map(|r| r.map_err(Into::<BoxError>::into));
        match next {
            None => {
                let _ = send.finish().await;
                return;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "request body failed; resetting the upstream stream");
                send.reset(Reason::CANCEL);
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => {
                    let bytes = data.copy_to_bytes(data.remaining());
                    if bytes.is_empty() {
                        continue;
                    }
                    if send.send_data(bytes, false).await.is_err() {
                        // The stream is gone (reset or answered early): stop reading.
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let mut b = HeaderBlock::builder();
                        for (n, v) in &trailers {
                            b.push_field(n, v);
                        }
                        let _ = send.send_trailers(b.finish());
                        return;
                    }
                }
            },
        }
    }
}

impl From<Kind> for Error {
    fn from(k: Kind) -> Error {
        Error::new(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field `http` can hold arrives in order with its value, the
    /// values share the block's buffer, and a field `http` refuses (a
    /// control byte the block allows in a value) is left out.
    #[test]
    fn header_map_shares_values_and_skips_what_http_refuses() {
        let block = HeaderBlock::try_from_pairs([
            ("Content-Type", "text/plain"),
            ("X-Empty", ""),
            ("X-Bad", "a\u{1}b"),
            ("set-cookie", "a=1"),
            ("Set-Cookie", "b=2"),
        ])
        .unwrap();
        let map = header_map(&block);
        assert_eq!(map.len(), 4);
        assert_eq!(map["content-type"], "text/plain");
        assert_eq!(map["x-empty"], "");
        assert!(map.get("x-bad").is_none());
        let cookies: Vec<_> = map.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        let buf = block.as_bytes().as_ptr_range();
        let v = map["content-type"].as_bytes().as_ptr();
        assert!(buf.contains(&v), "the value is a slice of the block");
    }
}
