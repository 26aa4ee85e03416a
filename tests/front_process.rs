//! `uwire proxy` and `uwire serve` as child processes: the TOML config
//! file (keys are the long options, the command line wins, errors name the
//! key and line, `--check-config`), the certificate reloaded on SIGHUP
//! without dropping a connection, and connection storms after which the
//! proxy's descriptors are back to their baseline. (Issue 12 items 1 and
//! 6; issue 13's connection storm.)
#![cfg(feature = "cli")]

mod front_common;
mod proxy_common;

use std::net::SocketAddr;
use std::time::Duration;

use front_common::*;
use proxy_common::*;
use tokio::io::AsyncWriteExt;

const START: Duration = Duration::from_secs(15);

/// Runs `uwire args...` to completion: (exit code, stdout, stderr).
async fn run_uwire(args: &[&str]) -> (i32, String, String) {
    let out = within(
        Duration::from_secs(30),
        "uwire run",
        tokio::process::Command::new(uwire_bin())
            .args(args)
            .env("UWIRE_LOG", "warn")
            .output(),
    )
    .await
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The address from `uwire proxy: http(s)://ADDR -> ...`.
async fn proxy_addr(child: &mut ChildProc) -> SocketAddr {
    let line = child.wait_line("uwire proxy: http", START).await;
    line.split("://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

async fn serve_child(sock: &std::path::Path) -> ChildProc {
    let bind = format!("unix:{}", sock.display());
    let child = ChildProc::spawn(&["serve", "--bind", &bind]);
    wait_connectable(sock, START).await;
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_sets_options_and_the_command_line_wins() {
    bounded(async {
        let dir = tempdir();
        let sock = dir.path().join("app.sock");
        let _app = serve_child(&sock).await;
        let public = dir.path().join("public");
        write_site(&public);
        let log = dir.path().join("access.log");
        let cfg = dir.path().join("uwire.toml");
        std::fs::write(
            &cfg,
            format!(
                "# the front\n[proxy]\nupstream = [\"unix:{}\"]\nlisten = \"127.0.0.1:1\"\n\
                 static = [\"/static={}\"]\naccess-log = \"{}\"\naccess-log-format = \"json\"\n\
                 param = [\"TEAM=blue\"]\nmax-body-size = 10\nproxy-protocol = false\n\
                 first-byte-timeout = \"5s\"\n\n[serve]\nbind = \"unix:/nowhere.sock\"\n",
                sock.display(),
                public.display(),
                log.display()
            ),
        )
        .unwrap();
        let cfg_s = cfg.to_string_lossy().into_owned();
        let (code, out, err) = run_uwire(&["proxy", "--config", &cfg_s, "--check-config"]).await;
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("configuration OK"), "{out}");

        // listen from the command line beats the file's (port 1 would fail).
        let mut child = ChildProc::spawn(&["proxy", "--config", &cfg_s, "--listen", "127.0.0.1:0"]);
        let addr = proxy_addr(&mut child).await;
        let c = http_client();
        let r = get(&c, &format!("http://{addr}/static/data.json")).await;
        assert_eq!((r.status, r.text().as_str()), (200, "{\"ok\": true}\n"));
        let r = get(&c, &format!("http://{addr}/environ")).await;
        assert_eq!(r.environ()["TEAM"], "blue");
        // max-body-size = 10 from the file.
        let r = post(&c, &format!("http://{addr}/echo"), "x".repeat(11)).await;
        assert_eq!(r.status, 413);
        let logged = within(Duration::from_secs(10), "access log", async {
            loop {
                let t = std::fs::read_to_string(&log).unwrap_or_default();
                if t.lines().count() >= 3 {
                    return t;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let first: serde_json::Value =
            serde_json::from_str(logged.lines().next().unwrap()).unwrap();
        assert_eq!(first["uri"], "/static/data.json");
        drop(child);

        // A repeatable option on the command line replaces the file's list.
        let mut child = ChildProc::spawn(&[
            "proxy",
            "--config",
            &cfg_s,
            "--listen",
            "127.0.0.1:0",
            "--param",
            "TEAM=red",
        ]);
        let addr = proxy_addr(&mut child).await;
        let r = get(&c, &format!("http://{addr}/environ")).await;
        assert_eq!(r.environ()["TEAM"], "red");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_name_the_key_and_the_line() {
    bounded(async {
        let dir = tempdir();
        let cfg = dir.path().join("bad.toml");
        let cfg_s = cfg.to_string_lossy().into_owned();
        let cases = [
            (
                "[proxy]\nupstream = [\"unix:/a.sock\"]\n\nheader-read-timeout = \"soon\"\n",
                "bad.toml:4: [proxy] key `header-read-timeout`",
            ),
            (
                "[proxy]\nupstream = [\"unix:/a.sock\"]\nlisten-on = \"x\"\n",
                "bad.toml:3: [proxy] unknown key `listen-on`",
            ),
            ("[proxy]\nupstream = \n", "bad.toml"),
            (
                "[proxy]\nupstream = [\"unix:/a.sock\"]\nstatic = [\"nope\"]\n",
                "bad.toml:3: [proxy] key `static`",
            ),
            (
                "[proxy]\nupstream = [\"unix:/a.sock\"]\ncompress = \"lzma\"\n",
                "bad.toml:3: [proxy] key `compress`",
            ),
        ];
        for (text, want) in cases {
            std::fs::write(&cfg, text).unwrap();
            let (code, out, err) =
                run_uwire(&["proxy", "--config", &cfg_s, "--check-config"]).await;
            assert_eq!(code, 2, "{text:?}: {out}{err}");
            assert!(err.contains(want), "{text:?}: want {want:?} in {err:?}");
        }
        // Values that parse but cannot work are found by --check-config.
        std::fs::write(
            &cfg,
            "[proxy]\nupstream = [\"unix:/a.sock\"]\nstatic = [\"/s=/no/such/dir\"]\n",
        )
        .unwrap();
        let (code, _, err) = run_uwire(&["proxy", "--config", &cfg_s, "--check-config"]).await;
        assert_ne!(code, 0);
        assert!(err.contains("/no/such/dir"), "{err}");
        // serve reads its own table.
        std::fs::write(&cfg, "[serve]\nmax-streams = \"many\"\n").unwrap();
        let (code, _, err) = run_uwire(&["serve", "--config", &cfg_s, "--check-config"]).await;
        assert_eq!(code, 2);
        assert!(
            err.contains("bad.toml:2: [serve] key `max-streams`"),
            "{err}"
        );
        std::fs::write(&cfg, "[serve]\nmax-streams = 7\nsocket-mode = \"600\"\n").unwrap();
        let (code, out, err) = run_uwire(&["serve", "--config", &cfg_s, "--check-config"]).await;
        assert_eq!(code, 0, "{out}{err}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_without_dropping_connections() {
    bounded(async {
        let dir = tempdir();
        let sock = dir.path().join("app.sock");
        let _app = serve_child(&sock).await;
        let ca = TestCa::new();
        let files = ca.write_leaf(dir.path(), "first");
        let upstream = format!("unix:{}", sock.display());
        let cert = files.cert.to_string_lossy().into_owned();
        let key = files.key.to_string_lossy().into_owned();
        let mut child = ChildProc::spawn(&[
            "proxy",
            "--upstream",
            &upstream,
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--access-log",
            "off",
        ]);
        let addr = proxy_addr(&mut child).await;
        let url = format!("https://localhost:{}/", addr.port());
        let resolve = format!("localhost:{}:127.0.0.1", addr.port());
        let cacert = path_str(dir.path(), "ca.pem");
        let subject = |r: &CurlOut| {
            r.stderr
                .lines()
                .find(|l| l.contains("subject:"))
                .unwrap_or("")
                .to_string()
        };
        let r = curl(&["-v", "--resolve", &resolve, "--cacert", &cacert, &url]).await;
        assert_eq!(r.status, 200, "{}", r.stderr);
        assert!(subject(&r).contains("first"), "{}", subject(&r));

        // A connection in the middle of a slow request when the reload
        // happens: it completes.
        let mut slow = tokio::process::Command::new("curl")
            .args([
                "-sS",
                "--resolve",
                &resolve,
                "--cacert",
                &cacert,
                "--data-binary",
                "@-",
            ])
            .arg(format!("https://localhost:{}/echo", addr.port()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdin = slow.stdin.take().unwrap();
        stdin.write_all(b"before-").await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;

        ca.write_leaf(dir.path(), "second");
        child.signal(libc::SIGHUP);
        child.wait_line("reloaded", START).await;
        let r = curl(&["-v", "--resolve", &resolve, "--cacert", &cacert, &url]).await;
        assert_eq!(r.status, 200);
        assert!(subject(&r).contains("second"), "{}", subject(&r));

        stdin.write_all(b"after").await.unwrap();
        drop(stdin);
        let out = within(
            Duration::from_secs(20),
            "slow upload",
            slow.wait_with_output(),
        )
        .await
        .unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "before-after");

        // A broken file on SIGHUP: the old certificate stays, and it says so.
        std::fs::write(&files.key, "garbage").unwrap();
        child.signal(libc::SIGHUP);
        child.wait_line("reload failed", START).await;
        let r = curl(&["-v", "--resolve", &resolve, "--cacert", &cacert, &url]).await;
        assert_eq!(r.status, 200);
        assert!(subject(&r).contains("second"));
    })
    .await
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Descriptors of `pid` that are TCP sockets (the listener and downstream
/// connections; upstream connections are Unix sockets here).
fn tcp_fds(pid: u32) -> usize {
    let mut inodes = std::collections::HashSet::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            if let Some(inode) = line.split_whitespace().nth(9) {
                inodes.insert(format!("socket:[{inode}]"));
            }
        }
    }
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|l| inodes.contains(&l.display().to_string()))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_storms_leave_no_descriptor_behind() {
    bounded(async {
        let dir = tempdir();
        let sock = dir.path().join("app.sock");
        let _app = serve_child(&sock).await;
        let upstream = format!("unix:{}", sock.display());
        let mut child = ChildProc::spawn(&[
            "proxy",
            "--upstream",
            &upstream,
            "--listen",
            "127.0.0.1:0",
            "--access-log",
            "off",
            "--first-byte-timeout",
            "1s",
            "--header-read-timeout",
            "1s",
            "--keepalive-timeout",
            "1s",
        ]);
        let addr = proxy_addr(&mut child).await;
        let c = http_client();
        // Warm up: the upstream pool exists before the baseline is taken.
        for _ in 0..20 {
            assert_eq!(get(&c, &format!("http://{addr}/")).await.status, 200);
        }
        drop(c);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let baseline = open_fds(child.pid);
        let tcp_baseline = tcp_fds(child.pid);
        assert_eq!(tcp_baseline, 1, "only the listener");

        // 600 connections: silent ones, abrupt closes, half requests,
        // complete requests.
        let mut tasks = Vec::new();
        for i in 0..600usize {
            tasks.push(tokio::spawn(async move {
                let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                    return;
                };
                match i % 4 {
                    0 => tokio::time::sleep(Duration::from_millis(200)).await,
                    1 => {
                        let _ = s.write_all(b"GET / HTTP/1.1\r\nHo").await;
                    }
                    2 => {
                        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
                        let mut buf = [0u8; 256];
                        let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
                    }
                    _ => {
                        let _ = s
                            .write_all(
                                b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc",
                            )
                            .await;
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let peak = open_fds(child.pid);
        // Downstream sockets all closed; upstream connections may have
        // grown within the pool's bound (--connections-per-upstream, 4).
        let settled = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if tcp_fds(child.pid) == tcp_baseline && open_fds(child.pid) <= baseline + 3 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        if settled.is_err() {
            let list: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", child.pid))
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|p| p.display().to_string())
                .collect();
            panic!("descriptors: baseline {baseline}, peak {peak}, now {list:?}");
        }
        println!(
            "proxy descriptors: baseline {baseline}, after the storm {peak}, settled {}",
            open_fds(child.pid)
        );
        // Still serving.
        let c = http_client();
        assert_eq!(get(&c, &format!("http://{addr}/")).await.status, 200);
    })
    .await
}
