//! A `tower::Service` as a uwire app: any service from
//! `uwire::server::Request` to `http::Response<B>` (with `B` an
//! `http_body::Body`) plugs in with `from_service`, so tower middleware
//! (`ServiceExt` combinators, layers) works unchanged.
//!
//! ```sh
//! cargo run --example tower_service -- /tmp/tower.sock
//! ```

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use tower::ServiceExt;
use uwire::server::{
    from_service, shutdown_signal, BindAddr, Listener, Request, Server, ServerConfig,
};

fn bind_addr(default: &str) -> BindAddr {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| default.to_owned());
    arg.parse()
        .unwrap_or_else(|_| BindAddr::Unix(std::path::PathBuf::from(arg)))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let config = ServerConfig::default();
    let listener = Listener::bind(&bind_addr("/tmp/uwire-tower.sock"), &config.bind).await?;
    eprintln!("tower_service: listening on {}", listener.local_addr());

    let svc = tower::service_fn(|req: Request| async move {
        let method = String::from_utf8_lossy(&req.head().method).into_owned();
        let path = String::from_utf8_lossy(&req.head().path).into_owned();
        let body = Full::new(Bytes::from(format!("tower saw {method} {path}\n")));
        Ok::<_, Infallible>(http::Response::new(body))
    })
    // A combinator from tower's ServiceExt: tag every response.
    .map_response(|mut resp: http::Response<Full<Bytes>>| {
        resp.headers_mut().insert(
            "x-served-by",
            http::HeaderValue::from_static("uwire tower example"),
        );
        resp
    });

    Server::new(config)
        .serve(listener, from_service(svc), shutdown_signal())
        .await
}
