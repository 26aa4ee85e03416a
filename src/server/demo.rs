//! The built-in demo application `uwire serve` runs by default:
//!
//! * `/` answers a short greeting;
//! * `/echo` streams the request body back as it arrives;
//! * `/environ` (and any path under it) answers the request's environ as JSON.

use bytes::Bytes;

use super::handler::{BoxError, Handler, Request, Response, ResponseBody};
use super::BoxFuture;

/// The demo application.
#[derive(Debug, Clone, Copy, Default)]
pub struct Demo;

fn text(status: u16, ctype: &'static str, body: impl Into<ResponseBody>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ctype),
    );
    r
}

impl Handler for Demo {
    fn call(&self, req: Request) -> BoxFuture<Result<Response, BoxError>> {
        Box::pin(async move {
            let path = req.head().path.clone();
            if &path[..] == b"/" {
                return Ok(text(
                    200,
                    "text/plain; charset=utf-8",
                    "Hello from uwire!\n",
                ));
            }
            if &path[..] == b"/echo" {
                let (_, _, mut body) = req.into_parts();
                let stream =
                    futures_util::stream::unfold(body_taken(&mut body), |mut b| async move {
                        b.data()
                            .await
                            .map(|r| (r.map_err(|e| Box::new(e) as BoxError), b))
                    });
                return Ok(text(
                    200,
                    "application/octet-stream",
                    ResponseBody::from_stream(stream),
                ));
            }
            if &path[..] == b"/environ" || path.starts_with(b"/environ/") {
                let json = req.environ().to_json_string();
                return Ok(text(200, "application/json", Bytes::from(json)));
            }
            Ok(text(
                404,
                "text/plain; charset=utf-8",
                "not found: try /, /echo or /environ\n",
            ))
        })
    }
}

fn body_taken(body: &mut super::Body) -> super::Body {
    std::mem::replace(body, super::Body::empty())
}
