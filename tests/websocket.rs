//! Upgrades end to end: a Rust WebSocket echo handler (`server::websocket`
//! on tokio-tungstenite) and a raw byte-echo upgrade handler, served by
//! `uwire::server::Server` on a Unix socket, reached through `uwire proxy`
//! (the binary, as a child process; in-process where a test sets limits)
//! by a real WebSocket client (tokio-tungstenite) and raw TCP.
#![cfg(all(feature = "cli", feature = "websocket"))]

mod proxy_common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use proxy_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use uwire::client::ClientConfig;
use uwire::proxy::ProxyConfig;
use uwire::server::{
    handler_fn, websocket, BindAddr, Listener, Request, Response, ResponseBody, Server,
    ServerConfig,
};

/// How the handler saw each socket end.
type Ends = mpsc::UnboundedSender<String>;

/// `/ws`: WebSocket echo (text and binary; closes with the client's code).
/// `/raw`: any upgrade token, bytes echoed until the client's half ends,
/// then our half ends. `/decline`: answers an offer with a plain 200.
fn handler(ends: Ends) -> impl uwire::server::Handler {
    handler_fn(move |mut req: Request| {
        let ends = ends.clone();
        async move {
            let path = req.head().path.clone();
            let resp = match &path[..] {
                b"/ws" => match websocket::accept(&mut req, websocket::Accept::default()) {
                    Err(e) => e.response(),
                    Ok((resp, on)) => {
                        tokio::spawn(async move {
                            let Ok(mut ws) = on.await else {
                                let _ = ends.send("not accepted".into());
                                return;
                            };
                            let end = loop {
                                match ws.next().await {
                                    Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                                        if let Err(e) = ws.send(m).await {
                                            break format!("send error: {e}");
                                        }
                                    }
                                    Some(Ok(Message::Close(f))) => {
                                        break format!(
                                            "close {}",
                                            f.map_or(0, |f| u16::from(f.code))
                                        )
                                    }
                                    Some(Ok(_)) => {}
                                    Some(Err(e)) => break format!("error: {e}"),
                                    None => break "eof".into(),
                                }
                            };
                            // Lets tungstenite finish the closing handshake.
                            let _ = ws.close(None).await;
                            let _ = ends.send(end);
                        });
                        resp
                    }
                },
                b"/raw" => match req.upgrade() {
                    None => Response::new(ResponseBody::from("no upgrade offered\n")),
                    Some(on) => {
                        let proto = req.upgrade_protocol().cloned().unwrap_or_default();
                        tokio::spawn(async move {
                            let Ok(mut io) = on.await else { return };
                            let mut buf = vec![0u8; 16 * 1024];
                            let mut total = 0usize;
                            loop {
                                match io.read(&mut buf).await {
                                    Ok(0) => break,
                                    Ok(n) => {
                                        total += n;
                                        if io.write_all(&buf[..n]).await.is_err() {
                                            let _ = ends.send(format!("raw write failed {total}"));
                                            return;
                                        }
                                    }
                                    Err(e) => {
                                        let _ = ends.send(format!("raw error {:?}", e.kind()));
                                        return;
                                    }
                                }
                            }
                            let _ = io.shutdown().await;
                            let _ = ends.send(format!("raw eof {total}"));
                        });
                        let mut r = Response::new(ResponseBody::empty());
                        *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
                        r.headers_mut()
                            .insert("upgrade", http::HeaderValue::from_bytes(&proto).unwrap());
                        r
                    }
                },
                b"/decline" => Response::new(ResponseBody::from(format!(
                    "declined {}\n",
                    req.upgrade_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .unwrap_or_default()
                ))),
                _ => {
                    let mut r = Response::new(ResponseBody::from("not found\n"));
                    *r.status_mut() = http::StatusCode::NOT_FOUND;
                    r
                }
            };
            Ok::<_, std::convert::Infallible>(resp)
        }
    })
}

struct WsApp {
    path: std::path::PathBuf,
    ends: mpsc::UnboundedReceiver<String>,
    _stop: oneshot::Sender<()>,
}

async fn ws_app(name: &str, config: ServerConfig) -> WsApp {
    let path = sock_path(name);
    let listener = Listener::bind(&BindAddr::Unix(path.clone()), &config.bind)
        .await
        .unwrap();
    let (tx, ends) = mpsc::unbounded_channel();
    let (stop, rx) = oneshot::channel::<()>();
    let h = handler(tx);
    tokio::spawn(async move {
        Server::new(config)
            .serve(listener, h, async {
                let _ = rx.await;
            })
            .await
    });
    WsApp {
        path,
        ends,
        _stop: stop,
    }
}

impl WsApp {
    async fn next_end(&mut self) -> String {
        within(Duration::from_secs(15), "handler end", self.ends.recv())
            .await
            .expect("handler channel closed")
    }
}

/// `uwire proxy` (the binary) in front of the Unix socket `path`.
async fn proxy_child(path: &Path, extra: &[&str]) -> (ChildProc, SocketAddr) {
    let up = format!("unix:{}", path.display());
    let mut args = vec!["proxy", "--upstream", &up, "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child = ChildProc::spawn(&args);
    let line = child
        .wait_line("uwire proxy: http://", Duration::from_secs(15))
        .await;
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr)
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn ws_connect(addr: SocketAddr, path: &str) -> Ws {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(format!("ws://{addr}{path}"), tcp)
        .await
        .expect("websocket handshake through the proxy");
    assert_eq!(resp.status(), 101);
    ws
}

async fn next_data(ws: &mut Ws) -> Message {
    loop {
        match within(Duration::from_secs(15), "echo", ws.next()).await {
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => return m,
            Some(Ok(Message::Pong(_) | Message::Ping(_) | Message::Frame(_))) => continue,
            other => panic!("expected a data message, got {other:?}"),
        }
    }
}

/// 1,000 text and 1,000 binary messages each way on one socket, a ping
/// answered by a pong, a close with a code the handler sees.
#[tokio::test]
async fn websocket_echo_through_uwire_proxy() {
    bounded(async {
        let mut app = ws_app("ws-echo", ServerConfig::default()).await;
        let (_proxy, addr) = proxy_child(&app.path, &[]).await;
        let mut ws = ws_connect(addr, "/ws").await;
        for i in 0..1000u32 {
            let text = format!("message {i} {}", "x".repeat((i % 97) as usize));
            ws.send(Message::text(text.clone())).await.unwrap();
            assert_eq!(next_data(&mut ws).await, Message::text(text));
            let bin: Vec<u8> = (0..(i % 300)).map(|b| (b ^ i) as u8).collect();
            ws.send(Message::binary(bin.clone())).await.unwrap();
            assert_eq!(next_data(&mut ws).await, Message::binary(bin));
        }
        // A message larger than the stream window, split across DATA frames.
        let big = vec![7u8; 1 << 20];
        ws.send(Message::binary(big.clone())).await.unwrap();
        assert_eq!(next_data(&mut ws).await, Message::binary(big));
        ws.send(Message::Ping(b"are you there".to_vec().into()))
            .await
            .unwrap();
        let pong = within(Duration::from_secs(15), "pong", async {
            loop {
                if let Some(Ok(Message::Pong(p))) = ws.next().await {
                    return p;
                }
            }
        })
        .await;
        assert_eq!(&pong[..], b"are you there");
        ws.close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
        // The handler's close reply, then the end of the connection.
        while let Some(Ok(_)) = within(Duration::from_secs(15), "close", ws.next()).await {}
        assert_eq!(app.next_end().await, "close 1001");
    })
    .await
}

/// 100 sockets at once, 50 messages each, every echo checked.
#[tokio::test]
async fn websocket_hundred_concurrent_sockets() {
    bounded(async {
        let mut app = ws_app("ws-many", ServerConfig::default()).await;
        let (_proxy, addr) = proxy_child(&app.path, &[]).await;
        let mut tasks = Vec::new();
        for c in 0..100u32 {
            tasks.push(tokio::spawn(async move {
                let mut ws = ws_connect(addr, "/ws").await;
                for i in 0..50u32 {
                    let m = Message::text(format!("{c}/{i}"));
                    ws.send(m.clone()).await.unwrap();
                    assert_eq!(next_data(&mut ws).await, m);
                }
                ws.close(None).await.unwrap();
                while let Some(Ok(_)) = ws.next().await {}
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for _ in 0..100 {
            assert_eq!(app.next_end().await, "close 0");
        }
    })
    .await
}

/// A client that vanishes mid-stream (TCP closed, no close frame): the
/// proxy resets the stream and the handler's socket ends promptly.
#[tokio::test]
async fn websocket_client_vanishing_is_seen_by_the_handler() {
    bounded(async {
        let mut app = ws_app("ws-vanish", ServerConfig::default()).await;
        let (_proxy, addr) = proxy_child(&app.path, &[]).await;
        let mut ws = ws_connect(addr, "/ws").await;
        ws.send(Message::text("hello")).await.unwrap();
        assert_eq!(next_data(&mut ws).await, Message::text("hello"));
        drop(ws);
        let end = app.next_end().await;
        assert!(
            end.starts_with("error") || end == "eof",
            "handler saw {end:?}"
        );
    })
    .await
}

/// Raw TCP: an `Upgrade: echo` handshake, bytes through, then the client's
/// half-close reaches the handler, which ends its half after the echo:
/// the client reads every byte, then EOF.
#[tokio::test]
async fn raw_upgrade_tunnels_bytes_and_half_close() {
    bounded(async {
        let mut app = ws_app("ws-raw", ServerConfig::default()).await;
        let (_proxy, addr) = proxy_child(&app.path, &[]).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"GET /raw HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .await
        .unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("upgrade: echo"), "{head}");
        assert!(lower.contains("connection: upgrade"), "{head}");
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (mut r, mut w) = s.into_split();
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&sent).await.unwrap();
            w.shutdown().await.unwrap();
            w
        });
        let mut got = Vec::new();
        within(
            Duration::from_secs(20),
            "echo to EOF",
            r.read_to_end(&mut got),
        )
        .await
        .unwrap();
        let _w = writer.await.unwrap();
        assert_eq!(got.len(), payload.len());
        assert!(got == payload, "echoed bytes differ");
        assert_eq!(app.next_end().await, format!("raw eof {}", payload.len()));
    })
    .await
}

/// An offer the handler declines is an ordinary response; a non-WebSocket
/// request to the WebSocket route gets 426 from the helper.
#[tokio::test]
async fn declined_offer_and_plain_request_behave_as_before() {
    bounded(async {
        let app = ws_app("ws-decline", ServerConfig::default()).await;
        let (_proxy, addr) = proxy_child(&app.path, &[]).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /decline HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            .await
            .unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut body = vec![0u8; "declined websocket\n".len()];
        within(Duration::from_secs(10), "body", s.read_exact(&mut body))
            .await
            .unwrap();
        assert_eq!(body, b"declined websocket\n");
        // Same connection, keep-alive as usual: a plain GET to /ws.
        s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 426"), "{head}");
        assert!(head.to_ascii_lowercase().contains("sec-websocket-version: 13"));
        // A bad key is refused by the helper with 400.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n")
            .await
            .unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    })
    .await
}

/// The proxy's tunnel idle timeout at its edge: a socket that keeps
/// talking more often than the limit lives on past it; a silent one is
/// cut, and the handler sees the stream reset.
#[tokio::test]
async fn tunnel_idle_timeout_edge() {
    bounded(async {
        let mut app = ws_app("ws-idle", ServerConfig::default()).await;
        let pcfg = ProxyConfig {
            tunnel: uwire::net::TunnelLimits {
                idle_timeout: Some(Duration::from_millis(800)),
                max_duration: None,
            },
            ..ProxyConfig::default()
        };
        let up = unix_upstream(&app.path);
        let proxy = Proxy::start(vec![up], ClientConfig::default(), pcfg).await;
        let mut ws = ws_connect(proxy.addr, "/ws").await;
        // Busy for three times the limit: alive.
        for i in 0..12 {
            ws.send(Message::text(format!("{i}"))).await.unwrap();
            assert_eq!(next_data(&mut ws).await, Message::text(format!("{i}")));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Silent: cut.
        let ended = within(Duration::from_secs(15), "idle cut", async {
            loop {
                match ws.next().await {
                    None | Some(Err(_)) => return,
                    Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        let () = ended;
        let end = app.next_end().await;
        assert!(
            end.starts_with("error") || end == "eof",
            "handler saw {end:?}"
        );
    })
    .await
}

/// The server's own tunnel limit (here: lifetime) ends a busy socket.
#[tokio::test]
async fn server_tunnel_max_duration_ends_the_socket() {
    bounded(async {
        let config = ServerConfig {
            tunnel: uwire::net::TunnelLimits {
                idle_timeout: None,
                max_duration: Some(Duration::from_secs(1)),
            },
            ..ServerConfig::default()
        };
        let mut app = ws_app("ws-max", config).await;
        let (_proxy, addr) = proxy_child(&app.path, &[]).await;
        let mut ws = ws_connect(addr, "/ws").await;
        let cut = within(Duration::from_secs(15), "lifetime cut", async {
            let mut i = 0u32;
            loop {
                i += 1;
                if ws.send(Message::text(format!("{i}"))).await.is_err() {
                    return i;
                }
                match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                    Ok(Some(Ok(_))) => {}
                    _ => return i,
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(cut > 1, "the socket worked before the limit");
        let end = app.next_end().await;
        assert!(
            end.starts_with("error") || end.starts_with("send error"),
            "handler saw {end:?}"
        );
    })
    .await
}

/// The access log line of an upgraded request is written when the tunnel
/// ends, with the protocol and the bytes carried each way.
#[tokio::test]
async fn access_log_records_upgrades() {
    bounded(async {
        let app = ws_app("ws-log", ServerConfig::default()).await;
        let log = std::env::temp_dir().join(format!("uwire-ws-log-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&log);
        let log_s = log.display().to_string();
        let (_proxy, addr) = proxy_child(
            &app.path,
            &["--access-log", &log_s, "--access-log-format", "json"],
        )
        .await;
        let mut ws = ws_connect(addr, "/ws").await;
        ws.send(Message::binary(vec![1u8; 1000])).await.unwrap();
        next_data(&mut ws).await;
        ws.close(None).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
        let lines = Arc::new(Mutex::new(String::new()));
        let l2 = lines.clone();
        wait_until(Duration::from_secs(15), "access log line", move || {
            let s = std::fs::read_to_string(&log).unwrap_or_default();
            let done = s.contains("\"upgrade\":\"websocket\"");
            *l2.lock().unwrap() = s;
            done
        })
        .await;
        let text = lines.lock().unwrap().clone();
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(v["status"], 101);
        assert!(v["bytes_received"].as_u64().unwrap() > 1000, "{v}");
        assert!(v["bytes_sent"].as_u64().unwrap() > 1000, "{v}");
    })
    .await
}

async fn read_head(s: &mut TcpStream) -> String {
    within(Duration::from_secs(15), "response head", async {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut b).await.unwrap();
            assert!(n > 0, "EOF in head: {:?}", String::from_utf8_lossy(&head));
            head.push(b[0]);
        }
        String::from_utf8(head).unwrap()
    })
    .await
}
