//! Compression of app responses (gzip, br, zstd) with tower-http's
//! streaming [`Compression`](tower_http::compression::Compression): a body
//! is compressed as it streams, never collected first.
//!
//! tower-http negotiates `Accept-Encoding` (q-values included), skips
//! responses that already carry `Content-Encoding` or `Content-Range`, and
//! sets `Vary: Accept-Encoding`. [`CompressPredicate`] adds the rest: only
//! listed (compressible) content types, only bodies of at least
//! `min_size` bytes (when the length is known), never 204/206/304 or
//! `Cache-Control: no-transform`.

use std::str::FromStr;
use std::sync::Arc;

use http::header;
use http_body::Body as HttpBody;
use tower_http::compression::{CompressionLevel, Predicate};

use super::response::ProxyBody;

/// Default smallest body compressed (when its length is known): 1 KiB.
pub const DEFAULT_COMPRESS_MIN_SIZE: u64 = 1024;
/// Default compression level for every algorithm: 4 (fast; brotli's own
/// default, 11, is far too slow for responses compressed on the fly).
pub const DEFAULT_COMPRESS_LEVEL: i32 = 4;
/// Default compressible content types: a `/` suffix means a whole
/// top-level type, otherwise the media type must match exactly (parameters
/// ignored); `+json`/`+xml` structured suffixes always count.
pub const DEFAULT_COMPRESS_TYPES: &[&str] = &[
    "text/",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/wasm",
    "application/manifest+json",
    "image/svg+xml",
    "font/ttf",
    "font/otf",
];

/// A compression algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// gzip (RFC 1952).
    Gzip,
    /// Brotli (RFC 7932).
    Br,
    /// Zstandard (RFC 8878).
    Zstd,
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Algorithm, String> {
        match s.trim() {
            "gzip" => Ok(Algorithm::Gzip),
            "br" => Ok(Algorithm::Br),
            "zstd" => Ok(Algorithm::Zstd),
            other => Err(format!(
                "unknown compression {other:?}: use gzip, br or zstd"
            )),
        }
    }
}

/// What app responses get compressed, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressionConfig {
    /// Enabled algorithms (empty: compression off). Default all three.
    pub algorithms: Vec<Algorithm>,
    /// Smallest body compressed. Default [`DEFAULT_COMPRESS_MIN_SIZE`].
    pub min_size: u64,
    /// Level, 1..=9 (gzip), 0..=11 (br), 1..=19 (zstd); clamped per
    /// algorithm. Default [`DEFAULT_COMPRESS_LEVEL`].
    pub level: i32,
    /// Compressible content types. Default [`DEFAULT_COMPRESS_TYPES`].
    pub types: Vec<String>,
}

impl Default for CompressionConfig {
    fn default() -> CompressionConfig {
        CompressionConfig {
            algorithms: vec![Algorithm::Zstd, Algorithm::Br, Algorithm::Gzip],
            min_size: DEFAULT_COMPRESS_MIN_SIZE,
            level: DEFAULT_COMPRESS_LEVEL,
            types: DEFAULT_COMPRESS_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl CompressionConfig {
    /// Whether any algorithm is enabled.
    pub fn is_enabled(&self) -> bool {
        !self.algorithms.is_empty()
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), String> {
        if !(0..=19).contains(&self.level) {
            return Err(format!(
                "compress_level {} is out of range 0..=19",
                self.level
            ));
        }
        Ok(())
    }

    /// The predicate of this configuration (built once per front).
    pub(crate) fn predicate(&self) -> CompressPredicate {
        CompressPredicate {
            min_size: self.min_size,
            types: Arc::new(self.types.iter().map(|t| t.to_ascii_lowercase()).collect()),
        }
    }

    /// Wraps `svc` in tower-http's compression with this configuration.
    pub(crate) fn layer<S>(
        &self,
        svc: S,
        predicate: CompressPredicate,
    ) -> tower_http::compression::Compression<S, CompressPredicate> {
        let has = |a| self.algorithms.contains(&a);
        tower_http::compression::Compression::new(svc)
            .gzip(has(Algorithm::Gzip))
            .br(has(Algorithm::Br))
            .zstd(has(Algorithm::Zstd))
            .quality(CompressionLevel::Precise(self.level))
            .compress_when(predicate)
    }
}

/// The request's `Accept-Encoding` fields, kept for the answer (the
/// request itself goes to the app).
#[derive(Debug, Default)]
pub(crate) struct AcceptEncoding {
    first: Option<header::HeaderValue>,
    rest: Vec<header::HeaderValue>,
}

impl AcceptEncoding {
    /// The fields of `headers` (most requests have one: no allocation).
    pub(crate) fn of(headers: &http::HeaderMap) -> AcceptEncoding {
        let mut all = headers.get_all(header::ACCEPT_ENCODING).iter();
        AcceptEncoding {
            first: all.next().cloned(),
            rest: all.cloned().collect(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &header::HeaderValue> {
        self.first.iter().chain(self.rest.iter())
    }

    /// Whether some coding is refused with `q=0`: only then can tower-http
    /// find nothing acceptable (it answers 406 then, whatever the body).
    fn refuses_some(&self) -> bool {
        self.iter()
            .any(|v| v.as_bytes().windows(2).any(|w| w == b"=0"))
    }
}

/// Whether tower-http's compression could change `resp`: a response it
/// may compress, or a request that refuses a coding (it may answer 406
/// then, whatever the body). Otherwise it would hand the body back
/// untouched, wrapped in its body type (several KiB, copied as the
/// response moves) that every frame passes through; so [`apply`] runs
/// only where this says yes.
pub(crate) fn may_apply(
    predicate: &CompressPredicate,
    accept: &AcceptEncoding,
    resp: &http::Response<ProxyBody>,
) -> bool {
    // The predicate first: most answers are too small, and it stops at
    // their length; the two lookups below would find nothing on most.
    let h = resp.headers();
    let may_compress = predicate.should_compress(resp)
        && !h.contains_key(header::CONTENT_ENCODING)
        && !h.contains_key(header::CONTENT_RANGE);
    may_compress || accept.refuses_some()
}

/// The response as tower-http's compression leaves it (see [`may_apply`]).
pub(crate) async fn apply(
    config: &CompressionConfig,
    predicate: &CompressPredicate,
    accept: AcceptEncoding,
    resp: http::Response<ProxyBody>,
) -> http::Response<ProxyBody> {
    let mut req = http::Request::new(());
    for v in accept.iter() {
        req.headers_mut().append(header::ACCEPT_ENCODING, v.clone());
    }
    let mut svc = config.layer(Answer(Some(resp)), predicate.clone());
    match tower_service::Service::call(&mut svc, req).await {
        Ok(r) => r.map(http_body_util::BodyExt::boxed_unsync),
        Err(e) => match e {},
    }
}

/// A service that answers once with a response already made.
struct Answer(Option<http::Response<ProxyBody>>);

impl tower_service::Service<http::Request<()>> for Answer {
    type Response = http::Response<ProxyBody>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<http::Response<ProxyBody>, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: http::Request<()>) -> Self::Future {
        let resp = self.0.take().unwrap_or_else(|| {
            super::response::error_response(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "response already taken",
            )
        });
        std::future::ready(Ok(resp))
    }
}

/// Decides per response whether compressing it is worth it.
#[derive(Debug, Clone)]
pub struct CompressPredicate {
    min_size: u64,
    types: Arc<Vec<String>>,
}

impl CompressPredicate {
    fn type_matches(&self, content_type: &str) -> bool {
        // Compared ignoring ASCII case, without a lowercased copy: the
        // configured types are lowercase already (`predicate`).
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .as_bytes();
        let ends_with = |suffix: &[u8]| {
            media.len() >= suffix.len()
                && media[media.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        };
        if ends_with(b"+json") || ends_with(b"+xml") {
            return true;
        }
        self.types.iter().any(|t| {
            let t = t.as_bytes();
            if t.ends_with(b"/") {
                media.len() >= t.len() && media[..t.len()].eq_ignore_ascii_case(t)
            } else {
                media.eq_ignore_ascii_case(t)
            }
        })
    }
}

impl Predicate for CompressPredicate {
    fn should_compress<B>(&self, response: &http::Response<B>) -> bool
    where
        B: HttpBody,
    {
        let status = response.status().as_u16();
        if matches!(status, 204 | 206 | 304) || status < 200 {
            return false;
        }
        // Cheapest test first: most small answers stop at their length.
        let h = response.headers();
        let declared = h
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .or_else(|| response.body().size_hint().exact());
        if declared.is_some_and(|n| n < self.min_size) {
            return false;
        }
        let Some(ct) = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        if !self.type_matches(ct) {
            return false;
        }
        !h.get_all(header::CACHE_CONTROL).iter().any(|v| {
            v.as_bytes()
                .windows(b"no-transform".len())
                .any(|w| w.eq_ignore_ascii_case(b"no-transform"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(ct: Option<&str>, len: Option<u64>, status: u16) -> http::Response<String> {
        let mut b = http::Response::builder().status(status);
        if let Some(ct) = ct {
            b = b.header("content-type", ct);
        }
        if let Some(n) = len {
            b = b.header("content-length", n);
        }
        b.body(String::new()).unwrap()
    }

    #[test]
    fn predicate_checks_type_size_and_status() {
        let cfg = CompressionConfig::default();
        let p = CompressPredicate {
            min_size: cfg.min_size,
            types: Arc::new(cfg.types.clone()),
        };
        assert!(p.should_compress(&resp(Some("text/html; charset=utf-8"), Some(5000), 200)));
        let mut streaming = http::Response::new(http_body_util::StreamBody::new(
            futures_util::stream::empty::<
                Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>,
            >(),
        ));
        streaming
            .headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        assert!(p.should_compress(&streaming));
        assert!(p.should_compress(&resp(Some("application/ld+json"), Some(4096), 200)));
        assert!(!p.should_compress(&resp(Some("image/png"), Some(5000), 200)));
        assert!(!p.should_compress(&resp(Some("text/plain"), Some(1023), 200)));
        assert!(p.should_compress(&resp(Some("text/plain"), Some(1024), 200)));
        assert!(!p.should_compress(&resp(None, Some(5000), 200)));
        assert!(!p.should_compress(&resp(Some("text/plain"), Some(5000), 206)));
        assert!(!p.should_compress(&resp(Some("text/plain"), Some(5000), 304)));
        let mut r = resp(Some("text/plain"), Some(5000), 200);
        r.headers_mut()
            .insert("cache-control", "public, no-transform".parse().unwrap());
        assert!(!p.should_compress(&r));
        r.headers_mut()
            .insert("cache-control", "max-age=60, No-Transform".parse().unwrap());
        assert!(!p.should_compress(&r), "directives are case-insensitive");
        r.headers_mut()
            .insert("cache-control", "max-age=60".parse().unwrap());
        assert!(p.should_compress(&r));
    }

    /// Media types match ignoring case and parameters; a configured type
    /// ending in `/` is a prefix; `+json` and `+xml` suffixes always match.
    #[test]
    fn type_matching_edges() {
        let p = CompressionConfig {
            types: vec!["Text/".into(), "application/json".into()],
            ..CompressionConfig::default()
        }
        .predicate();
        for yes in [
            "text/html",
            "TEXT/CSS; charset=utf-8",
            " Application/JSON ; q=1",
            "application/vnd.api+JSON",
            "image/svg+xml",
        ] {
            assert!(p.type_matches(yes), "{yes}");
        }
        for no in [
            "text",
            "application/json5",
            "application/jso",
            "",
            "json",
            "+json",
        ] {
            assert_eq!(p.type_matches(no), no == "+json", "{no}");
        }
    }
}
