//! The smallest uwire app: answers every request with a greeting.
//!
//! ```sh
//! cargo run --example hello -- /tmp/hello.sock      # or unix:/path, tcp:127.0.0.1:9000
//! ```
//!
//! Stop it with Ctrl-C or SIGTERM: in-flight requests finish and the socket
//! file is removed.

use std::convert::Infallible;

use uwire::server::{
    handler_fn, shutdown_signal, BindAddr, Listener, Request, Response, Server, ServerConfig,
};

/// `argv[1]` as a bind address: `unix:/path`, `tcp:HOST:PORT`, `systemd`,
/// or a bare socket path.
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
    let listener = Listener::bind(&bind_addr("/tmp/uwire-hello.sock"), &config.bind).await?;
    eprintln!("hello: listening on {}", listener.local_addr());

    let app = handler_fn(|req: Request| async move {
        // The CGI/WSGI environ is built for every request.
        let path = String::from_utf8_lossy(req.environ().get("PATH_INFO").unwrap_or_default())
            .into_owned();
        Ok::<_, Infallible>(Response::new(
            format!("Hello from uwire! You asked for {path}\n").into(),
        ))
    });

    Server::new(config)
        .serve(listener, app, shutdown_signal())
        .await
}
