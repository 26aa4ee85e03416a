//! Helpers of the front tests (TLS, static files, compression, browser):
//! a test CA issuing certificates (rcgen), a front started in the test's
//! runtime with its [`Front`] handle (for reloads), and `curl` as the
//! HTTP client, as users run it.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uwire::client::{Client, ClientConfig, Upstream};
use uwire::proxy::{Front, ProxyConfig, TlsFiles};

/// A certificate authority for tests, and the PEM files it wrote.
pub struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    /// The CA certificate (PEM).
    pub pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "uwire test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa { params, key, pem }
    }

    /// A server certificate for localhost and 127.0.0.1 named `cn`:
    /// `(chain PEM, key PEM)`.
    pub fn leaf(&self, cn: &str) -> (String, String) {
        let mut p =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes a leaf's files into `dir` as cert.pem / key.pem.
    pub fn write_leaf(&self, dir: &Path, cn: &str) -> TlsFiles {
        let (cert, key) = self.leaf(cn);
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
        std::fs::write(dir.join("ca.pem"), &self.pem).unwrap();
        files
    }
}

/// A front started in the test's runtime, with its handle.
pub struct RunningFront {
    pub addr: SocketAddr,
    pub front: Arc<Front>,
    pub client: Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningFront {
    pub async fn start(upstreams: Vec<Upstream>, cfg: ProxyConfig) -> RunningFront {
        let client = Client::new(upstreams, ClientConfig::default()).unwrap();
        let front = Arc::new(Front::new(client.clone(), cfg).expect("front config"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let f = front.clone();
        let task = tokio::spawn(async move {
            f.serve(listener, async {
                let _ = rx.await;
            })
            .await
        });
        RunningFront {
            addr,
            front,
            client,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn https(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.addr.port())
    }
}

impl Drop for RunningFront {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// What `curl` got.
#[derive(Debug)]
pub struct CurlOut {
    /// 0 when curl failed (see `stderr`).
    pub status: u16,
    /// `1.1`, `2`, ...
    pub version: String,
    /// Fields of the last response head, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub stderr: String,
    pub ok: bool,
}

impl CurlOut {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A fresh temporary directory (removed on drop).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("uwire-front-")
        .tempdir()
        .unwrap()
}

/// Runs `curl -sS` with `args` (blocking; call from `spawn_blocking` or a
/// sync context) and parses the response.
pub fn curl_sync(args: &[&str]) -> CurlOut {
    let dir = tempdir();
    let head = dir.path().join("head");
    let body = dir.path().join("body");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-D"])
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code} %{http_version}"])
        .args(args)
        .output()
        .expect("run curl (is it installed?)");
    let written = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut w = written.split_whitespace();
    let status = w.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let version = w.next().unwrap_or("").to_string();
    let head_text = std::fs::read_to_string(&head).unwrap_or_default();
    // The last head (after any 1xx or redirects).
    let last = head_text
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap_or("");
    let headers = last
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    CurlOut {
        status,
        version,
        headers,
        body: std::fs::read(&body).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        ok: out.status.success(),
    }
}

/// [`curl_sync`] from async code.
pub async fn curl(args: &[&str]) -> CurlOut {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        curl_sync(&refs)
    })
    .await
    .unwrap()
}

/// A directory of files for the static tests and the browser page.
pub fn write_site(root: &Path) {
    let put = |p: &str, b: &[u8]| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b).unwrap();
    };
    put("app.css", b"#status { color: rgb(0, 128, 0); }\n");
    put("app.js", SITE_JS.as_bytes());
    put("index.html", SITE_HTML.as_bytes());
    put("logo.png", &png_4x4());
    put("data.json", b"{\"ok\": true}\n");
    put(
        "big.txt",
        "all work and no play makes jack a dull boy\n"
            .repeat(2000)
            .as_bytes(),
    );
    put("sub/index.html", b"<p>sub index</p>\n");
    put("empty/.keep", b"");
}

/// The page the browser test loads: CSS, JS and an image from the static
/// mount, JSON from the app.
pub const SITE_HTML: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>uwire front</title>
<link rel="stylesheet" href="/static/app.css">
<script src="/static/app.js" defer></script>
</head><body>
<h1>uwire front test page</h1>
<p id="status">loading</p>
<p id="scheme">-</p><p id="https">-</p><p id="protocol">-</p>
<p id="image">-</p><p id="color">-</p>
<img id="logo" src="/static/logo.png" width="64" height="64" alt="logo">
</body></html>
"#;

/// Fetches the app's environ and writes what it found into the DOM.
pub const SITE_JS: &str = r#"
async function main() {
  const img = document.getElementById('logo');
  await (img.complete ? Promise.resolve() : new Promise(r => { img.onload = r; img.onerror = r; }));
  document.getElementById('image').textContent = 'image ' + img.naturalWidth + 'x' + img.naturalHeight;
  document.getElementById('color').textContent = 'color ' + getComputedStyle(document.getElementById('status')).color;
  const r = await fetch('/environ/from-js?x=1');
  const env = await r.json();
  document.getElementById('scheme').textContent = 'scheme ' + env.REQUEST_SCHEME;
  document.getElementById('https').textContent = 'https ' + env.HTTPS;
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource').map(e => e.nextHopProtocol);
  document.getElementById('protocol').textContent = 'protocol ' + nav.nextHopProtocol + ' ' + res.join(',');
  document.getElementById('status').textContent = 'loaded ' + env.PATH_INFO;
}
main().catch(e => { document.getElementById('status').textContent = 'error ' + e; });
"#;

/// A 4x4 RGB PNG (red), written out by hand: signature, IHDR, one stored
/// (uncompressed) zlib IDAT, IEND, with their CRCs.
pub fn png_4x4() -> Vec<u8> {
    fn crc(data: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    fn adler(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &d in data {
            a = (a + d as u32) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut c = kind.to_vec();
        c.extend_from_slice(data);
        out.extend_from_slice(&c);
        out.extend_from_slice(&crc(&c).to_be_bytes());
    }
    let (w, h) = (4u32, 4u32);
    // Each row: filter byte 0 (none), then w red pixels.
    let row: Vec<u8> = std::iter::once(0u8)
        .chain([255u8, 0, 0].repeat(w as usize))
        .collect();
    let raw = row.repeat(h as usize);
    let mut z = vec![0x78, 0x01, 1];
    z.extend_from_slice(&(raw.len() as u16).to_le_bytes());
    z.extend_from_slice(&(!(raw.len() as u16)).to_le_bytes());
    z.extend_from_slice(&raw);
    z.extend_from_slice(&adler(&raw).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Width and height from a PNG's IHDR.
pub fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if png.len() < 24 || &png[..8] != b"\x89PNG\r\n\x1a\n" || &png[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(png[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(png[20..24].try_into().ok()?);
    Some((w, h))
}

/// `dir/name`, as a string.
pub fn path_str(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

/// The path of a file under a temp dir, created empty.
pub fn touch(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, b"").unwrap();
    p
}
