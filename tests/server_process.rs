//! `uwire serve` as a child process: a 100 MiB body streamed through /echo
//! with bounded memory, systemd socket activation, the Prometheus endpoint.
#![cfg(feature = "cli")]

mod common;
mod ports;

use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use ports::free_port;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Size of the body streamed through the child's /echo.
const BIG: usize = 100 << 20;
/// Peak RSS the child may reach while echoing it.
const RSS_LIMIT_KIB: u64 = 64 << 10;

/// Byte `i` of the big body: a pattern that catches reordered, dropped or
/// duplicated chunks.
fn pattern(i: usize) -> u8 {
    (i ^ (i >> 8) ^ (i >> 16) ^ (i >> 24)) as u8
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_100_mib_through_a_child_with_bounded_memory() {
    bounded(async {
        let path = sock_path("big-echo");
        let bind = format!("unix:{}", path.display());
        let mut child = spawn_serve(&["--bind", &bind]);
        wait_for_socket(&path).await;
        let pid = child.child.id();
        let before = vm_hwm_kib(pid);
        let c = connect(&path).await;
        let t0 = Instant::now();
        let (mut send, resp) = c.send_request(head("POST", "/echo"), false).await.unwrap();
        let upload = tokio::spawn(async move {
            const CHUNK: usize = 64 << 10;
            let mut off = 0;
            while off < BIG {
                let n = CHUNK.min(BIG - off);
                let chunk: Vec<u8> = (off..off + n).map(pattern).collect();
                send.send_data(Bytes::from(chunk), off + n == BIG)
                    .await
                    .expect("upload");
                off += n;
            }
        });
        let (h, mut body) = resp.await.unwrap();
        assert_eq!(h.status, 200);
        let mut got = 0usize;
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("echo body");
            for (k, b) in chunk.iter().enumerate() {
                if *b != pattern(got + k) {
                    panic!("echoed byte {} differs", got + k);
                }
            }
            got += chunk.len();
        }
        upload.await.unwrap();
        let took = t0.elapsed();
        assert_eq!(got, BIG, "echoed {got} of {BIG} bytes");
        let peak = vm_hwm_kib(pid);
        println!(
            "100 MiB through /echo of `uwire serve` (pid {pid}) in {took:.2?}: peak RSS (VmHWM) {} KiB = {:.1} MiB (at start {} KiB)",
            peak,
            peak as f64 / 1024.0,
            before
        );
        assert!(
            peak < RSS_LIMIT_KIB,
            "peak RSS {peak} KiB over {RSS_LIMIT_KIB} KiB"
        );
        drop(c);
        // SAFETY: plain syscall on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
        let st = wait_exit(&mut child.child, Duration::from_secs(10)).await;
        assert!(st.success(), "{st}");
        assert!(!path.exists(), "socket file left after SIGTERM");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_socket_activation() {
    bounded(async {
        let path = sock_path("systemd");
        let pre = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let fd = pre.as_raw_fd();
        let mut cmd = Command::new("/bin/sh");
        // LISTEN_PID must be the server's pid: the shell's own, kept by exec.
        cmd.arg("-c")
            .arg("LISTEN_PID=$$ exec \"$0\" serve --bind systemd")
            .arg(uwire_bin())
            .env("LISTEN_FDS", "1")
            .env("UWIRE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if fd == 3 {
                    // Already in place: just let it survive exec.
                    if libc::fcntl(3, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, 3) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = Child_ {
            child: cmd.spawn().expect("spawn uwire serve --bind systemd"),
        };
        // The test keeps its copy of the socket open; the child serves it.
        let c = connect(&path).await;
        let (status, body) = within(
            Duration::from_secs(10),
            "request via systemd socket",
            async { get(&c, "/").await },
        )
        .await
        .expect("served through the inherited socket");
        assert_eq!((status, body), (200, Bytes::from("Hello from uwire!\n")));
        let (status, body) = request(&c, head("POST", "/echo"), Some("activated".into()))
            .await
            .unwrap();
        assert_eq!((status, body), (200, Bytes::from("activated")));
        drop(c);
        // The inherited socket is marked close-on-exec once taken (as
        // sd_listen_fds does), so it does not leak into the app's children.
        let fdinfo = std::fs::read_to_string(format!("/proc/{}/fdinfo/3", child.child.id()))
            .expect("fd 3 of the child");
        let flags = fdinfo
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
            .unwrap();
        assert_ne!(flags & libc::O_CLOEXEC as u32, 0, "fd 3 flags {flags:o}");

        // SAFETY: plain syscall on our own child's pid.
        assert_eq!(
            unsafe { libc::kill(child.child.id() as i32, libc::SIGTERM) },
            0
        );
        let st = wait_exit(&mut child.child, Duration::from_secs(10)).await;
        assert!(st.success(), "{st}");
        // Socket-activated sockets belong to systemd: the file stays.
        assert!(path.exists());
        drop(pre);
        std::fs::remove_file(&path).unwrap();

        // Without LISTEN_PID/LISTEN_FDS the CLI fails clearly instead of
        // serving some random descriptor.
        let out = Command::new(uwire_bin())
            .args(["serve", "--bind", "systemd"])
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("LISTEN_PID"), "{err}");
    })
    .await
}

async fn http_get(addr: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_metrics_endpoint_serves_prometheus_text() {
    bounded(async {
        let path = sock_path("cli-metrics");
        let bind = format!("unix:{}", path.display());
        let port = free_port();
        let maddr = format!("127.0.0.1:{port}");
        let mut child = spawn_serve(&["--bind", &bind, "--metrics", &maddr]);
        wait_for_socket(&path).await;
        let c = connect(&path).await;
        for _ in 0..3 {
            assert_eq!(get(&c, "/").await.unwrap().0, 200);
        }
        assert_eq!(get(&c, "/missing").await.unwrap().0, 404);
        let body = Bytes::from(vec![1u8; 1234]);
        assert_eq!(
            request(&c, head("POST", "/echo"), Some(body.clone()))
                .await
                .unwrap(),
            (200, body)
        );
        let expected = [
            "uwire_streams_total 5",
            "uwire_streams_active 0",
            // wait_for_socket's probe (connected, then closed) and ours
            "uwire_connections_total 2",
            "uwire_connections_active 1",
            "uwire_request_body_bytes_total 1234",
            // a peer closing an idle connection is not an error
            "uwire_errors_total{kind=\"protocol\"} 0",
            "uwire_errors_total{kind=\"io\"} 0",
            "uwire_request_duration_seconds_count 5",
        ];
        // The gauges settle a moment after the client has its answers (the
        // server finishes its bookkeeping after the last frame is out), so
        // scrape until they do; a wrong count never settles and fails.
        let mut last = String::new();
        let settled = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(t) = http_get(&maddr).await {
                    let ok = t
                        .split_once("\r\n\r\n")
                        .is_some_and(|(_, b)| expected.iter().all(|e| b.lines().any(|l| l == *e)));
                    last = t;
                    if ok {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let text = last;
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Type: text/plain; version=0.0.4"));
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        for line in expected {
            assert!(
                body.lines().any(|l| l == line),
                "missing {line:?} in\n{body}"
            );
        }
        assert!(settled.is_ok());
        assert!(body.contains("# TYPE uwire_streams_total counter"));
        assert!(body.contains("# TYPE uwire_request_duration_seconds histogram"));
        drop(c);
        // SAFETY: plain syscall on our own child's pid.
        assert_eq!(
            unsafe { libc::kill(child.child.id() as i32, libc::SIGTERM) },
            0
        );
        assert!(wait_exit(&mut child.child, Duration::from_secs(10))
            .await
            .success());
    })
    .await
}
