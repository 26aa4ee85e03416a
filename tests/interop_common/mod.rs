//! Helpers of the interop tests against real nginx and real uWSGI
//! (`tests/interop_nginx.rs`, `tests/interop_uwsgi.rs`): a per-test
//! temporary directory, child processes stopped by PID when dropped
//! (nginx with a private config, uWSGI, `uwire serve`, `uwire proxy`), a raw
//! HTTP/1.1 client, and the missing-tool policy.
//!
//! Missing tools: when nginx, uWSGI (or the Python packages a test needs)
//! are not installed, a test prints a loud `SKIP` line and passes, unless
//! `UWIRE_REQUIRE_INTEROP=1` (CI sets it), in which case it fails.
//!
//! `UWIRE_KEEP_INTEROP=1` keeps every test's directory (configs, logs);
//! a failing test always keeps its directory and prints its logs.
#![allow(dead_code)] // each test binary uses a different subset

#[path = "../ports/mod.rs"]
mod ports;
pub use ports::free_port;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound for one whole test.
pub const TEST_LIMIT: Duration = Duration::from_secs(50);
/// Upper bound for a process to get ready.
pub const READY_LIMIT: Duration = Duration::from_secs(15);
/// Upper bound for one HTTP exchange.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(30);

/// The WSGI apps of `tests/interop_apps`.
pub fn apps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop_apps")
}

/// Runs `fut` with [`TEST_LIMIT`]: a hang fails the test.
pub async fn bounded<F: Future>(fut: F) -> F::Output {
    match tokio::time::timeout(TEST_LIMIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("test did not finish within {TEST_LIMIT:?}"),
    }
}

// ---------------------------------------------------------------------------
// Tools and the skip policy
// ---------------------------------------------------------------------------

/// What a test needs installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// nginx and `/etc/nginx/uwsgi_params` (Debian package `nginx`).
    Nginx,
    /// uWSGI with its Python plugin (`pip install uwsgi`).
    Uwsgi,
    /// Flask, importable by uWSGI's Python (`pip install flask`).
    Flask,
    /// Django, importable by uWSGI's Python (`pip install django`).
    Django,
}

/// Where the tools are.
#[derive(Debug, Clone)]
pub struct Tools {
    pub nginx: PathBuf,
    pub uwsgi_params: PathBuf,
    pub uwsgi: PathBuf,
}

fn find_in_path(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The Python interpreter uWSGI embeds, so `import flask` is checked where
/// it matters: `uwsgi --python-version` gives the version, and the matching
/// `python3.X` next to the uwsgi binary (pip installs both into one `bin`),
/// else `python3` on PATH.
fn python_can_import(uwsgi: &Path, module: &str) -> bool {
    let version = Command::new(uwsgi)
        .arg("--python-version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let short: String = version.split('.').take(2).collect::<Vec<_>>().join(".");
    let real = std::fs::canonicalize(uwsgi).unwrap_or_else(|_| uwsgi.to_path_buf());
    let mut candidates = Vec::new();
    if !short.is_empty() {
        if let Some(bin) = real.parent() {
            candidates.push(bin.join(format!("python{short}")));
        }
        if let Some(p) = find_in_path(&format!("python{short}"), &[]) {
            candidates.push(p);
        }
    }
    if let Some(p) = find_in_path("python3", &[]) {
        candidates.push(p);
    }
    candidates
        .into_iter()
        .filter(|p| is_executable(p))
        .any(|py| {
            Command::new(py)
                .args(["-c", &format!("import {module}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// Finds `needs`. When something is missing: with `UWIRE_REQUIRE_INTEROP=1`
/// the test fails; otherwise a loud SKIP line is written straight to the
/// terminal (not captured by the test harness) and `None` is returned.
pub fn require(test: &str, needs: &[Tool]) -> Option<Tools> {
    let nginx = find_in_path(
        "nginx",
        &["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"],
    );
    let uwsgi_params = PathBuf::from("/etc/nginx/uwsgi_params");
    let uwsgi = find_in_path("uwsgi", &[]);
    let mut missing = Vec::new();
    if needs.contains(&Tool::Nginx) {
        if nginx.is_none() {
            missing.push("nginx (apt-get install nginx)".to_string());
        }
        if !uwsgi_params.is_file() {
            missing.push("/etc/nginx/uwsgi_params (apt-get install nginx)".to_string());
        }
    }
    let needs_uwsgi = needs
        .iter()
        .any(|t| matches!(t, Tool::Uwsgi | Tool::Flask | Tool::Django));
    if needs_uwsgi && uwsgi.is_none() {
        missing.push("uwsgi (pip install uwsgi)".to_string());
    }
    if let Some(u) = &uwsgi {
        for (tool, module) in [(Tool::Flask, "flask"), (Tool::Django, "django")] {
            if needs.contains(&tool) && !python_can_import(u, module) {
                missing.push(format!(
                    "{module} for uWSGI's Python (pip install {module})"
                ));
            }
        }
    }
    if missing.is_empty() {
        return Some(Tools {
            nginx: nginx.unwrap_or_else(|| PathBuf::from("nginx")),
            uwsgi_params,
            uwsgi: uwsgi.unwrap_or_else(|| PathBuf::from("uwsgi")),
        });
    }
    let what = missing.join(", ");
    if std::env::var("UWIRE_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("{test}: UWIRE_REQUIRE_INTEROP=1 but not installed: {what}");
    }
    let _ = writeln!(
        io::stderr(),
        "\n****************************************************************\n\
         *** SKIP {test}: not installed: {what}\n\
         *** (set UWIRE_REQUIRE_INTEROP=1 to make this a failure)\n\
         ****************************************************************"
    );
    None
}

// ---------------------------------------------------------------------------
// Temporary directory
// ---------------------------------------------------------------------------

/// A per-test directory under the system temp dir, removed when dropped
/// (kept when the test failed or `UWIRE_KEEP_INTEROP=1`).
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        // Short: Unix socket paths are limited to 107 bytes.
        let path =
            std::env::temp_dir().join(format!("uwire-interop-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the test directory");
        TempDir { path }
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("UWIRE_KEEP_INTEROP").is_some() {
            let _ = writeln!(io::stderr(), "interop: kept {}", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// A child process this test started. Dropping it sends SIGTERM to that
/// PID, waits up to 5 s, then sends SIGKILL and waits: it is always reaped.
/// Its stdout and stderr go to a log file.
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Child,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).expect("create the log file");
        let err = out.try_clone().expect("clone the log file");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            log,
            child,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Panics (with the log) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early ({status}); log {}:\n{}",
                self.name,
                self.log.display(),
                self.log_text()
            );
        }
    }

    /// Waits until the log contains `needle`, failing if the process exits
    /// or `limit` passes.
    pub async fn wait_log(&mut self, needle: &str, limit: Duration) {
        let start = Instant::now();
        loop {
            if self.log_text().contains(needle) {
                return;
            }
            self.assert_running();
            if start.elapsed() > limit {
                panic!(
                    "{}: {needle:?} not in its log within {limit:?}:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the PID of our own unreaped child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let _ = writeln!(
                io::stderr(),
                "---- {} log ({}) ----\n{}",
                self.name,
                self.log.display(),
                tail(&self.log_text(), 60)
            );
        }
    }
}

fn read_lossy(p: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Connects to `addr` from a 5-digit source port (`REMOTE_PORT` is part of
/// the vars block too; Linux's default ephemeral range is all 5-digit, but
/// a machine may be configured otherwise).
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    connect_with_rcvbuf(addr, None).await
}

/// [`connect`] with a fixed receive buffer (set before the handshake, so
/// the kernel does not grow it). A client that reads a little and leaves
/// must not have megabytes absorbed into its socket meanwhile: loopback
/// receive buffers autotune up to `net.ipv4.tcp_rmem`'s maximum (32 MiB
/// on these machines), enough for a whole test response.
pub async fn connect_with_rcvbuf(addr: SocketAddr, rcvbuf: Option<u32>) -> io::Result<TcpStream> {
    let socket = || -> io::Result<tokio::net::TcpSocket> {
        let sock = tokio::net::TcpSocket::new_v4()?;
        if let Some(n) = rcvbuf {
            sock.set_recv_buffer_size(n)?;
        }
        Ok(sock)
    };
    for _ in 0..100 {
        let sock = socket()?;
        sock.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        if sock.local_addr()?.port() >= 10_000 {
            return sock.connect(addr).await;
        }
    }
    // No 5-digit port came up: any source port, same buffer.
    socket()?.connect(addr).await
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Polls until `addr` accepts TCP connections (the process must stay up).
pub async fn wait_tcp(p: &mut Proc, addr: SocketAddr) {
    if !try_wait_tcp(p, addr).await {
        p.assert_running();
    }
}

/// Like [`wait_tcp`], but returns false (instead of failing) when the
/// process exits first: a caller may retry on another port.
pub async fn try_wait_tcp(p: &mut Proc, addr: SocketAddr) -> bool {
    let start = Instant::now();
    loop {
        if TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        if p.has_exited() {
            return false;
        }
        if start.elapsed() > READY_LIMIT {
            panic!("{}: {addr} not accepting within {READY_LIMIT:?}", p.name);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many times a process is started again when a port it was given got
/// taken in between (free ports are picked before the process binds them).
const PORT_ATTEMPTS: usize = 3;

fn port_taken(logs: &[String]) -> bool {
    logs.iter()
        .any(|l| l.contains("Address already in use") || l.contains("in use"))
}

/// Polls until the socket file exists (the process must stay up). No probe
/// connection is made: it would show in the server's counters.
pub async fn wait_socket_file(p: &mut Proc, path: &Path) {
    let start = Instant::now();
    use std::os::unix::fs::FileTypeExt;
    loop {
        if std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
            return;
        }
        p.assert_running();
        if start.elapsed() > READY_LIMIT {
            panic!(
                "{}: {} not created within {READY_LIMIT:?}",
                p.name,
                path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// uWSGI
// ---------------------------------------------------------------------------

/// A real uWSGI (master + 1 worker) on a Unix socket in the test directory.
pub struct Uwsgi {
    pub proc: Proc,
    pub sock: PathBuf,
    /// Where the environ app appends `drip stopped ...` lines.
    pub events: PathBuf,
}

/// The app uWSGI loads.
pub enum WsgiApp {
    /// `environ_app.py` (with `/echo` and `/drip`).
    Environ,
    /// `flask_app.py`.
    Flask,
    /// `djangoproj/wsgi.py`.
    Django,
}

impl Uwsgi {
    /// Starts `uwsgi --socket DIR/NAME.sock --chmod-socket=666 --die-on-term
    /// --master --processes 1 --need-app` with `app` and `extra` options
    /// (e.g. `--buffer-size 65535`).
    pub async fn start(
        tools: &Tools,
        dir: &TempDir,
        name: &str,
        app: WsgiApp,
        extra: &[&str],
    ) -> Uwsgi {
        let sock = dir.join(&format!("{name}.sock"));
        let events = dir.join(&format!("{name}.events"));
        let mut cmd = Command::new(&tools.uwsgi);
        cmd.arg("--socket")
            .arg(&sock)
            .args([
                "--chmod-socket=666",
                "--die-on-term",
                "--master",
                "--processes",
                "1",
                "--need-app",
                "--pidfile",
            ])
            .arg(dir.join(&format!("{name}.pid")));
        let apps = apps_dir();
        match app {
            WsgiApp::Environ => {
                cmd.arg("--wsgi-file").arg(apps.join("environ_app.py"));
            }
            WsgiApp::Flask => {
                cmd.arg("--wsgi-file").arg(apps.join("flask_app.py"));
            }
            WsgiApp::Django => {
                cmd.arg("--pythonpath")
                    .arg(&apps)
                    .args(["--module", "djangoproj.wsgi:application"]);
            }
        }
        cmd.args(extra)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("INTEROP_EVENTS", &events);
        let mut proc = Proc::spawn(
            &format!("uwsgi[{name}]"),
            cmd,
            dir.join(&format!("{name}.log")),
        );
        proc.wait_log("spawned uWSGI worker 1", READY_LIMIT).await;
        wait_socket_file(&mut proc, &sock).await;
        Uwsgi { proc, sock, events }
    }

    /// The lines the environ app appended to its events file.
    pub fn events(&self) -> Vec<String> {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Whether uWSGI logged a failed response write (the client, or nginx
    /// for it, went away). It says so in one of two ways, by timing: a
    /// `write()` that fails logs `uwsgi_response_write_body_do(): Broken
    /// pipe ...`, while a peer that closes as uWSGI waits for the socket to
    /// take more fails the wait, which logs nothing of its own. Either way
    /// the Python plugin then raises in the app, and logs `OSError: write
    /// error`.
    pub fn saw_write_fail(&self) -> bool {
        let log = self.proc.log_text();
        log.contains("uwsgi_response_write_body_do()") || log.contains("Error: write error")
    }

    /// How many request log lines (`{N vars in M bytes}`) uWSGI wrote.
    pub fn requests_logged(&self) -> usize {
        self.proc.log_text().matches(" vars in ").count()
    }
}

// ---------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------

/// One `server` of the private nginx config: `listen 127.0.0.1:PORT`, then
/// `server` directives, then `location / { include uwsgi_params;
/// uwsgi_pass unix:UPSTREAM; location directives }`.
pub struct Site {
    pub name: &'static str,
    pub upstream: PathBuf,
    pub server: String,
    pub location: String,
}

/// A real nginx (master + 1 worker) with a private config in the test
/// directory.
pub struct Nginx {
    pub proc: Proc,
    pub error_log: PathBuf,
    pub conf: PathBuf,
    ports: Vec<(&'static str, SocketAddr)>,
}

impl Nginx {
    pub async fn start(tools: &Tools, dir: &TempDir, sites: &[Site]) -> Nginx {
        for attempt in 1..=PORT_ATTEMPTS {
            let (mut proc, ports, conf) = Nginx::spawn(tools, dir, sites);
            let mut up = true;
            for (_, addr) in &ports {
                up = up && try_wait_tcp(&mut proc, *addr).await;
            }
            if up {
                return Nginx {
                    proc,
                    error_log: dir.join("nginx-error.log"),
                    conf,
                    ports,
                };
            }
            let logs = [
                proc.log_text(),
                read_lossy(&dir.join("nginx-startup.log")),
                read_lossy(&dir.join("nginx-error.log")),
            ];
            if attempt == PORT_ATTEMPTS || !port_taken(&logs) {
                panic!("nginx did not start:\n{}", logs.join("\n"));
            }
        }
        unreachable!()
    }

    fn spawn(
        tools: &Tools,
        dir: &TempDir,
        sites: &[Site],
    ) -> (Proc, Vec<(&'static str, SocketAddr)>, PathBuf) {
        let d = dir.path.display();
        let tmp = dir.join("nginx-tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let t = tmp.display();
        // SAFETY: geteuid(2) has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let mut conf = String::new();
        if root {
            conf.push_str("user root;\n");
        }
        conf.push_str(&format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/nginx-error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log {d}/nginx-access.log;\n\
             \x20 client_body_temp_path {t}/client_body;\n  proxy_temp_path {t}/proxy;\n\
             \x20 fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n\
             \x20 scgi_temp_path {t}/scgi;\n"
        ));
        let mut ports = Vec::new();
        for s in sites {
            let addr = local(free_port());
            ports.push((s.name, addr));
            conf.push_str(&format!(
                "  # {}\n  server {{\n    listen {addr};\n    {}\n    location / {{\n      include {};\n      uwsgi_pass unix:{};\n      {}\n    }}\n  }}\n",
                s.name,
                s.server,
                tools.uwsgi_params.display(),
                s.upstream.display(),
                s.location
            ));
        }
        conf.push_str("}\n");
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, &conf).unwrap();
        let mut cmd = Command::new(&tools.nginx);
        cmd.arg("-p")
            .arg(&dir.path)
            .arg("-e")
            .arg(dir.join("nginx-startup.log"))
            .arg("-c")
            .arg(&conf_path);
        let proc = Proc::spawn("nginx", cmd, dir.join("nginx.log"));
        (proc, ports, conf_path)
    }

    /// The address of site `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.ports
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no nginx site {name}"))
            .1
    }

    pub fn error_log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.error_log).unwrap_or_default()).into_owned()
    }

    /// Waits (up to 3 s) for the error log to contain `needle`.
    pub async fn wait_error_log(&self, needle: &str) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if self.error_log_text().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

/// What this machine's `uwsgi_params` does with `HTTP_HOST`. Debian's
/// nginx packages (since the 2025 security update) add
/// `uwsgi_param HTTP_HOST $host;`, which replaces the client's `Host`
/// header by `$host` (lower-cased, port dropped); upstream nginx's file has
/// no such line and the header passes as sent.
pub fn params_set_http_host_to_host(tools: &Tools) -> bool {
    std::fs::read_to_string(&tools.uwsgi_params)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .any(|w| w.len() >= 3 && w[0] == "uwsgi_param" && w[1] == "HTTP_HOST" && w[2] == "$host;")
}

/// `HTTP_HOST` as nginx passes it for a request with header `Host: host`.
pub fn nginx_http_host(tools: &Tools, host: &str) -> String {
    if params_set_http_host_to_host(tools) {
        host.rsplit_once(':')
            .map_or(host, |(h, _)| h)
            .to_ascii_lowercase()
    } else {
        host.to_string()
    }
}

// ---------------------------------------------------------------------------
// uwire children
// ---------------------------------------------------------------------------

pub fn uwire_bin() -> &'static str {
    env!("CARGO_BIN_EXE_uwire")
}

/// `uwire serve --bind unix:DIR/uwire.sock` (demo app) with its metrics
/// endpoint.
pub struct Serve {
    pub proc: Proc,
    pub sock: PathBuf,
    pub metrics: SocketAddr,
}

impl Serve {
    pub async fn start(dir: &TempDir, extra: &[&str]) -> Serve {
        let sock = dir.join("uwire.sock");
        for attempt in 1..=PORT_ATTEMPTS {
            let metrics = local(free_port());
            let mut cmd = Command::new(uwire_bin());
            cmd.arg("serve")
                .arg("--bind")
                .arg(format!("unix:{}", sock.display()))
                .args(["--socket-mode", "666", "--drain-timeout", "1s", "--metrics"])
                .arg(metrics.to_string())
                .args(extra)
                .env("UWIRE_LOG", "info");
            let mut proc = Proc::spawn("uwire serve", cmd, dir.join("uwire-serve.log"));
            proc.wait_log("serving the demo app", READY_LIMIT).await;
            wait_socket_file(&mut proc, &sock).await;
            // The metrics endpoint binds in a task: a taken port is only
            // logged, so probe it and start again on another port.
            let start = Instant::now();
            let mut up = false;
            while start.elapsed() < READY_LIMIT {
                if TcpStream::connect(metrics).await.is_ok() {
                    up = true;
                    break;
                }
                if proc.log_text().contains("metrics endpoint failed") {
                    break;
                }
                proc.assert_running();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if up {
                return Serve {
                    proc,
                    sock,
                    metrics,
                };
            }
            if attempt == PORT_ATTEMPTS || !port_taken(&[proc.log_text()]) {
                panic!("uwire serve: metrics endpoint not up:\n{}", proc.log_text());
            }
            drop(proc);
        }
        unreachable!()
    }

    /// The Prometheus counters, `name{labels}` -> value.
    pub async fn metrics(&self) -> BTreeMap<String, f64> {
        let r = Req::get("/metrics")
            .send(self.metrics)
            .await
            .expect("metrics");
        assert_eq!(r.status, 200);
        r.text()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect()
    }

    pub async fn metric(&self, name: &str) -> f64 {
        self.metrics().await.get(name).copied().unwrap_or(0.0)
    }
}

/// `uwire proxy --listen 127.0.0.1:PORT --upstream UPSTREAM`.
pub struct UwireProxy {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl UwireProxy {
    pub async fn start(dir: &TempDir, name: &str, upstream: &str, extra: &[&str]) -> UwireProxy {
        for attempt in 1..=PORT_ATTEMPTS {
            let addr = local(free_port());
            let mut cmd = Command::new(uwire_bin());
            cmd.arg("proxy")
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--upstream")
                .arg(upstream)
                .args(["--drain-timeout", "1s"])
                .args(extra)
                .env("UWIRE_LOG", "info");
            let mut proc = Proc::spawn(
                &format!("uwire proxy[{name}]"),
                cmd,
                dir.join(&format!("proxy-{name}.log")),
            );
            if try_wait_tcp(&mut proc, addr).await {
                return UwireProxy { proc, addr };
            }
            if attempt == PORT_ATTEMPTS || !port_taken(&[proc.log_text()]) {
                proc.assert_running();
            }
        }
        unreachable!()
    }
}

// ---------------------------------------------------------------------------
// A raw HTTP/1.1 client
// ---------------------------------------------------------------------------

/// The default `Host` header of [`Req`].
pub const HOST: &str = "interop.test:8080";

/// How a request body is sent.
#[derive(Clone)]
pub enum ReqBody {
    None,
    /// With `Content-Length`.
    Full(Vec<u8>),
    /// `Transfer-Encoding: chunked`, in pieces of this size.
    Chunked(Vec<u8>, usize),
}

/// A request written byte for byte as built: header lines in order,
/// repeats and odd names allowed. `Host: HOST` and `Connection: close`
/// are added unless a header of that name is given.
#[derive(Clone)]
pub struct Req {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: ReqBody,
}

impl Req {
    pub fn new(method: &str, target: &str) -> Req {
        Req {
            method: method.into(),
            target: target.into(),
            headers: Vec::new(),
            body: ReqBody::None,
        }
    }

    pub fn get(target: &str) -> Req {
        Req::new("GET", target)
    }

    pub fn post(target: &str, body: impl Into<Vec<u8>>) -> Req {
        Req::new("POST", target).body(body)
    }

    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = ReqBody::Full(body.into());
        self
    }

    pub fn chunked(mut self, body: impl Into<Vec<u8>>, piece: usize) -> Req {
        self.body = ReqBody::Chunked(body.into(), piece);
        self
    }

    fn has(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The request head as sent.
    pub fn head_bytes(&self) -> Vec<u8> {
        let mut h = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        if !self.has("host") {
            h.push_str(&format!("Host: {HOST}\r\n"));
        }
        for (n, v) in &self.headers {
            h.push_str(&format!("{n}: {v}\r\n"));
        }
        match &self.body {
            ReqBody::None => {}
            ReqBody::Full(b) => h.push_str(&format!("Content-Length: {}\r\n", b.len())),
            ReqBody::Chunked(..) => h.push_str("Transfer-Encoding: chunked\r\n"),
        }
        if !self.has("connection") {
            h.push_str("Connection: close\r\n");
        }
        h.push_str("\r\n");
        h.into_bytes()
    }

    /// Sends the request on a new connection while reading the response
    /// (so a streamed echo never deadlocks), then reads until the server
    /// closes or the framing says the response is complete.
    pub async fn send(&self, addr: SocketAddr) -> io::Result<Resp> {
        let fut = async {
            let stream = connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut rd, mut wr) = stream.into_split();
            let head = self.head_bytes();
            let body = self.body.clone();
            let writer = tokio::spawn(async move {
                wr.write_all(&head).await?;
                match body {
                    ReqBody::None => {}
                    ReqBody::Full(b) => {
                        for piece in b.chunks(256 * 1024) {
                            wr.write_all(piece).await?;
                        }
                    }
                    ReqBody::Chunked(b, n) => {
                        for piece in b.chunks(n.max(1)) {
                            wr.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                                .await?;
                            wr.write_all(piece).await?;
                            wr.write_all(b"\r\n").await?;
                        }
                        wr.write_all(b"0\r\n\r\n").await?;
                    }
                }
                wr.flush().await?;
                // Keep the write half open until the response is read.
                Ok::<_, io::Error>(wr)
            });
            let mut buf = Vec::new();
            let mut tmp = vec![0u8; 256 * 1024];
            loop {
                if let Some(r) = Resp::parse(&buf, self.method == "HEAD")? {
                    if r.complete {
                        writer.abort();
                        return Ok(r);
                    }
                }
                let n = rd.read(&mut tmp).await?;
                if n == 0 {
                    writer.abort();
                    return match Resp::parse_eof(&buf)? {
                        Some(r) => Ok(r),
                        None => Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("connection closed after {} bytes", buf.len()),
                        )),
                    };
                }
                buf.extend_from_slice(&tmp[..n]);
            }
        };
        match tokio::time::timeout(REQUEST_LIMIT, fut).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "request timed out")),
        }
    }

    /// [`Req::send`], panicking on an I/O error.
    pub async fn fetch(&self, addr: SocketAddr) -> Resp {
        self.send(addr)
            .await
            .unwrap_or_else(|e| panic!("{} {} -> {addr}: {e}", self.method, self.target))
    }
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the body ended as framed (false: the connection closed
    /// first).
    pub complete: bool,
}

fn find(h: &[u8], needle: &[u8]) -> Option<usize> {
    h.windows(needle.len()).position(|w| w == needle)
}

impl Resp {
    /// Parses `buf`; `None` until the head is complete.
    fn parse(buf: &[u8], head_request: bool) -> io::Result<Option<Resp>> {
        let Some(end) = find(buf, b"\r\n\r\n") else {
            return Ok(None);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, status_line.to_string()))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let rest = &buf[end + 4..];
        let mut r = Resp {
            status,
            headers,
            body: Vec::new(),
            complete: false,
        };
        if (100..200).contains(&status) {
            // Interim: parse what follows it.
            return Resp::parse(rest, head_request);
        }
        if head_request || status == 204 || status == 304 {
            r.complete = true;
            return Ok(Some(r));
        }
        if r.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            let (body, done) = dechunk(rest)?;
            r.body = body;
            r.complete = done;
        } else if let Some(n) = r.header("content-length") {
            let n: usize = n
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "content-length"))?;
            r.body = rest[..n.min(rest.len())].to_vec();
            r.complete = rest.len() >= n;
        } else {
            r.body = rest.to_vec();
        }
        Ok(Some(r))
    }

    /// Parses `buf` once the server closed the connection.
    fn parse_eof(buf: &[u8]) -> io::Result<Option<Resp>> {
        let r = Resp::parse(buf, false)?;
        Ok(r.map(|mut r| {
            let delimited =
                r.header("content-length").is_some() || r.header("transfer-encoding").is_some();
            if !delimited {
                r.complete = true;
            }
            r
        }))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as a JSON object of strings (an environ).
    pub fn environ(&self) -> Environ {
        assert_eq!(self.status, 200, "environ request failed: {}", self.text());
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("environ JSON: {e}: {}", self.text()));
        let obj = v.as_object().expect("a JSON object");
        Environ(
            obj.iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect(),
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("JSON body: {e}: {}", self.text()))
    }
}

/// Decodes a chunked body; `(data, complete)`.
fn dechunk(mut b: &[u8]) -> io::Result<(Vec<u8>, bool)> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut out = Vec::new();
    loop {
        let Some(eol) = find(b, b"\r\n") else {
            return Ok((out, false));
        };
        let line = std::str::from_utf8(&b[..eol]).map_err(|_| bad("chunk size"))?;
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
            .map_err(|_| bad("chunk size"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok((out, find(b, b"\r\n").is_some()));
        }
        if b.len() < size + 2 {
            out.extend_from_slice(&b[..size.min(b.len())]);
            return Ok((out, false));
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// An environ as JSON strings (PEP 3333: byte 0xNN is U+00NN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environ(pub BTreeMap<String, String>);

impl Environ {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// The value of `k`, failing the test when it is absent.
    pub fn var(&self, k: &str) -> &str {
        self.get(k)
            .unwrap_or_else(|| panic!("{k} not in the environ: {:#?}", self.0))
    }

    /// The CGI variables: everything but the WSGI/uWSGI extras
    /// (`wsgi.*`, `uwsgi.*`) and the test app's `body.*`.
    pub fn cgi(&self) -> BTreeMap<&str, &str> {
        self.0
            .iter()
            .filter(|(k, _)| !k.contains('.'))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// The size of the uwsgi vars block these CGI variables came in (each
    /// var: 2-byte key size, key, 2-byte value size, value), valid when
    /// every var was sent once: what nginx's `uwsgi request is too big` and
    /// uWSGI's `{N vars in M bytes}` count.
    pub fn block_size(&self) -> usize {
        self.cgi().iter().map(|(k, v)| 4 + k.len() + v.len()).sum()
    }
}

/// How two environs compare on their CGI variables.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EnvironDiff {
    /// Defined by both, with different values: `(name, ours, theirs)`.
    pub differ: Vec<(String, String, String)>,
    /// Defined by ours only.
    pub only_ours: Vec<String>,
    /// Defined by theirs only.
    pub only_theirs: Vec<String>,
}

/// Compares `ours` with `theirs` on their CGI variables.
pub fn diff(ours: &Environ, theirs: &Environ) -> EnvironDiff {
    let (a, b) = (ours.cgi(), theirs.cgi());
    let mut d = EnvironDiff::default();
    for (k, v) in &a {
        match b.get(k) {
            Some(w) if w != v => d.differ.push((k.to_string(), v.to_string(), w.to_string())),
            Some(_) => {}
            None => d.only_ours.push(k.to_string()),
        }
    }
    for k in b.keys() {
        if !a.contains_key(k) {
            d.only_theirs.push(k.to_string());
        }
    }
    d
}

/// Asserts that `ours` and `theirs` differ exactly as listed: `differ` are
/// the names allowed to have different values (every one must differ),
/// `only_ours`/`only_theirs` the exact sets of names one side lacks.
#[track_caller]
pub fn assert_diff(
    what: &str,
    ours: &Environ,
    theirs: &Environ,
    differ: &[&str],
    only_ours: &[&str],
    only_theirs: &[&str],
) {
    let d = diff(ours, theirs);
    let names = |v: &[(String, String, String)]| v.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    let sorted = |v: &[&str]| {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    let ok = names(&d.differ) == sorted(differ)
        && d.only_ours == sorted(only_ours)
        && d.only_theirs == sorted(only_theirs);
    assert!(
        ok,
        "{what}: environs differ other than expected\n\
         expected differ={differ:?} only_ours={only_ours:?} only_theirs={only_theirs:?}\n\
         got {d:#?}\nours: {:#?}\ntheirs: {:#?}",
        ours.0, theirs.0
    );
}

/// A deterministic byte pattern (not all zeros, not periodic in 4 KiB).
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x2545_f491;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 11) as u8
        })
        .collect()
}

/// SHA-256 as lower-case hex, for comparing with the environ app's
/// `body.sha256` (a tiny implementation: no new dependency).
pub fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 64];
        for i in 0..16 {
            w[i] = u32::from_be_bytes(block[i * 4..i * 4 + 4].try_into().unwrap());
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let mut v = h;
        for i in 0..64 {
            let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
            let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
            let t1 = v[7]
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
            let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            let t2 = s0.wrapping_add(maj);
            v = [
                t1.wrapping_add(t2),
                v[0],
                v[1],
                v[2],
                v[3].wrapping_add(t1),
                v[4],
                v[5],
                v[6],
            ];
        }
        for (a, b) in h.iter_mut().zip(v) {
            *a = a.wrapping_add(b);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

/// `n` headers `X-Hnnnn: <value>` whose values are `len` bytes each
/// (`vvvv...`), the last one `last_extra` bytes longer.
pub fn filler_headers(req: Req, n: usize, len: usize, last_extra: usize) -> Req {
    let mut req = req;
    for i in 0..n {
        let l = if i + 1 == n { len + last_extra } else { len };
        req = req.header(&format!("X-H{i:04}"), &"v".repeat(l));
    }
    req
}

/// Reads a response head and then only `want` body bytes, then drops the
/// connection (unread data makes the kernel send RST): a client that goes
/// away mid-response. Returns the status and how many body bytes were
/// read.
pub async fn read_then_disconnect(addr: SocketAddr, req: &Req, want: usize) -> (u16, usize) {
    let fut = async {
        // A small receive buffer: the response must stay in the server's
        // hands (and fail there once we leave), not be taken in whole by
        // our kernel before we close.
        let stream = connect_with_rcvbuf(addr, Some(64 * 1024)).await.unwrap();
        let (mut rd, mut wr) = stream.into_split();
        let head = req.head_bytes();
        let body = match &req.body {
            ReqBody::Full(b) => b.clone(),
            ReqBody::None => Vec::new(),
            ReqBody::Chunked(..) => panic!("read_then_disconnect: use a Content-Length body"),
        };
        let writer = tokio::spawn(async move {
            let _ = wr.write_all(&head).await;
            for piece in body.chunks(256 * 1024) {
                if wr.write_all(piece).await.is_err() {
                    break;
                }
            }
            // Hold the write half until aborted.
            std::future::pending::<()>().await;
            drop(wr);
        });
        let mut buf = Vec::new();
        let mut tmp = vec![0u8; 64 * 1024];
        let (status, body_start) = loop {
            let n = rd.read(&mut tmp).await.unwrap();
            assert!(n > 0, "closed before the response head");
            buf.extend_from_slice(&tmp[..n]);
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let line = String::from_utf8_lossy(&buf[..end]).into_owned();
                let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
                break (status, end + 4);
            }
        };
        let mut got = buf.len() - body_start;
        while got < want {
            let n = rd.read(&mut tmp).await.unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        writer.abort();
        let _ = writer.await;
        drop(rd);
        (status, got)
    };
    tokio::time::timeout(REQUEST_LIMIT, fut)
        .await
        .expect("read_then_disconnect timed out")
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; returns
/// whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha256_known_answers() {
        assert_eq!(
            super::sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            super::sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
