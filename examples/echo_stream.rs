//! Streams every request body back as it arrives, chunk by chunk, without
//! buffering it: memory stays flat whatever the body size, and a slow reader
//! slows the sender (flow control) instead of growing a buffer.
//!
//! ```sh
//! cargo run --example echo_stream -- /tmp/echo.sock
//! ```

use futures_util::stream;
use uwire::server::{
    handler_fn, shutdown_signal, BindAddr, BoxError, Listener, Request, Response, ResponseBody,
    Server, ServerConfig,
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
    let config = ServerConfig {
        // Larger bodies fail with BodyError::TooLarge (the stream is reset
        // with LIMIT_EXCEEDED); a body_length hint over it gets 413 up front.
        max_body_size: 256 << 20,
        ..ServerConfig::default()
    };
    let listener = Listener::bind(&bind_addr("/tmp/uwire-echo.sock"), &config.bind).await?;
    eprintln!("echo_stream: listening on {}", listener.local_addr());

    let app = handler_fn(|req: Request| async move {
        let (_head, _environ, body) = req.into_parts();
        // Each chunk is sent as soon as it is read; the next one is read
        // only once the previous one was handed to the connection.
        let chunks = stream::unfold(body, |mut body| async move {
            let next = body.data().await?;
            Some((next.map_err(|e| Box::new(e) as BoxError), body))
        });
        let mut resp = Response::new(ResponseBody::from_stream(chunks));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/octet-stream"),
        );
        Ok::<_, BoxError>(resp)
    });

    Server::new(config)
        .serve(listener, app, shutdown_signal())
        .await
}
