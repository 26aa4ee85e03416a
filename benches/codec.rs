//! Codec benchmark: uwire REQUEST heads against HTTP/1.1 text (httparse) and
//! against the rejected "repeated Header message" protobuf design, plus DATA
//! frame throughput.
//!
//! Run with `cargo bench --no-default-features --features mimalloc --bench
//! codec` (or `scripts/bench-codec` for a summary table with the ratios).
//! With the `mimalloc` feature the bench allocates as the `uwire` binary
//! and the Python package's native module do (`uwire::alloc::Mi`); without
//! it, with the system's allocator (what a program embedding the crate
//! gets unless it chooses one).
//!
//! All three head representations carry the same content: method, scheme,
//! authority, path, query, version and the same 20 browser-like header
//! fields (673 bytes of HTTP/1.1 text; the uwire REQUEST frame is 747 bytes,
//! its header block 666). Every decode benchmark touches every header name
//! and value (summing their lengths), because httparse and the uwire block
//! iterator both hand back slices and the work is only comparable when the
//! consumer actually reads them.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, Criterion, Throughput};
use prost::Message;
use tokio_util::codec::{Decoder, Encoder};
use uwire::codec::Codec;
use uwire::frame::Limits;
use uwire::frame::{
    Data, Frame, HeaderBlock, HttpVersion, Request, RequestHead, StreamId, HEADER_LEN,
};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: uwire::alloc::Mi = uwire::alloc::Mi;

/// The allocator this build runs with, as the interleaved mode reports it.
const ALLOCATOR: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else {
    "system"
};

// ---------------------------------------------------------------------------
// Shared content
// ---------------------------------------------------------------------------

const METHOD: &str = "GET";
const PATH: &str = "/catalog/laptops";
const QUERY: &str = "sort=price&page=2";

/// 20 header fields a current desktop browser sends for a same-origin
/// navigation behind a load balancer.
const HEADERS: [(&str, &str); 20] = [
    ("Host", "shop.example.com"),
    ("Connection", "keep-alive"),
    (
        "sec-ch-ua",
        "\"Chromium\";v=\"124\", \"Not.A/Brand\";v=\"8\"",
    ),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", "\"Linux\""),
    ("Upgrade-Insecure-Requests", "1"),
    (
        "User-Agent",
        "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0 Safari/537.36",
    ),
    ("Accept", "text/html,*/*;q=0.8"),
    ("Sec-Fetch-Site", "same-origin"),
    ("Sec-Fetch-Mode", "navigate"),
    ("Sec-Fetch-User", "?1"),
    ("Sec-Fetch-Dest", "document"),
    ("Referer", "https://shop.example.com/"),
    ("Accept-Encoding", "gzip, deflate, br"),
    ("Accept-Language", "en-US,en;q=0.9"),
    ("Cookie", "session=5f2b9c1e; cart=3"),
    ("X-Forwarded-For", "203.0.113.195"),
    ("X-Forwarded-Proto", "https"),
    ("X-Request-Id", "7c9e6679"),
    ("Priority", "u=0, i"),
];

fn http_text() -> Vec<u8> {
    let mut v = Vec::new();
    write_http(&mut v);
    v
}

/// The request line and header section as HTTP/1.1 text.
fn write_http(v: &mut Vec<u8>) {
    v.extend_from_slice(METHOD.as_bytes());
    v.push(b' ');
    v.extend_from_slice(PATH.as_bytes());
    v.push(b'?');
    v.extend_from_slice(QUERY.as_bytes());
    v.extend_from_slice(b" HTTP/1.1\r\n");
    for (n, val) in HEADERS {
        v.extend_from_slice(n.as_bytes());
        v.extend_from_slice(b": ");
        v.extend_from_slice(val.as_bytes());
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"\r\n");
}

fn request_head() -> RequestHead {
    RequestHead {
        method: Bytes::from_static(METHOD.as_bytes()),
        scheme: Bytes::from_static(b"https"),
        authority: Bytes::from_static(HEADERS[0].1.as_bytes()),
        path: Bytes::from_static(PATH.as_bytes()),
        query: Some(Bytes::from_static(QUERY.as_bytes())),
        version: HttpVersion::HTTP_11,
        headers: HeaderBlock::try_from_pairs(HEADERS).unwrap(),
        ..RequestHead::default()
    }
}

fn request_frame() -> Frame {
    Request::new(StreamId::new(1), request_head(), true).into()
}

fn encoded_frame(f: &Frame) -> BytesMut {
    let mut b = BytesMut::new();
    Codec::without_preface(Limits::default())
        .encode(f, &mut b)
        .unwrap();
    b
}

/// A copy of `wire` in the state a connection's read buffer is in after its
/// first frame: already shared (a frame was split off and dropped), so
/// splitting the next payload off costs a refcount increment and not the
/// one-time promotion of a fresh `Vec`-backed buffer.
fn read_buffer(wire: &[u8]) -> BytesMut {
    let mut b = BytesMut::with_capacity(wire.len() + 1);
    b.extend_from_slice(&[0]);
    b.extend_from_slice(wire);
    drop(b.split_to(1));
    b
}

/// Reads every field a server needs and every header name and value.
fn touch_uwire(head: &RequestHead) -> usize {
    let mut n = head.method.len() + head.path.len() + head.query.as_ref().map_or(0, |q| q.len());
    for (name, value) in &head.headers {
        n += name.len() + value.len();
    }
    n
}

// ---------------------------------------------------------------------------
// The alternative design: headers as `repeated Header` protobuf messages.
// ---------------------------------------------------------------------------

mod alt {
    use bytes::Bytes;

    /// One header field as its own protobuf message.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Header {
        #[prost(bytes = "bytes", tag = "1")]
        pub name: Bytes,
        #[prost(bytes = "bytes", tag = "2")]
        pub value: Bytes,
    }

    /// uwire.v1.RequestHead with `repeated Header` instead of compact blocks.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RequestHead {
        #[prost(bytes = "bytes", tag = "1")]
        pub method: Bytes,
        #[prost(bytes = "bytes", tag = "2")]
        pub scheme: Bytes,
        #[prost(bytes = "bytes", tag = "3")]
        pub authority: Bytes,
        #[prost(bytes = "bytes", tag = "4")]
        pub path: Bytes,
        #[prost(bytes = "bytes", optional, tag = "5")]
        pub query: Option<Bytes>,
        #[prost(int32, tag = "6")]
        pub version: i32,
        #[prost(message, repeated, tag = "7")]
        pub headers: Vec<Header>,
        #[prost(bytes = "bytes", tag = "8")]
        pub client_addr: Bytes,
        #[prost(uint32, tag = "9")]
        pub client_port: u32,
        #[prost(bytes = "bytes", tag = "10")]
        pub server_name: Bytes,
        #[prost(uint32, tag = "11")]
        pub server_port: u32,
        #[prost(bool, tag = "12")]
        pub tls: bool,
        #[prost(message, repeated, tag = "13")]
        pub params: Vec<Header>,
        #[prost(uint64, optional, tag = "14")]
        pub body_length: Option<u64>,
    }

    /// The same validation the compact block gets (tchar names, no NUL/CR/LF
    /// in values), so both designs do the same work.
    pub fn validate(h: &RequestHead) -> bool {
        h.headers
            .iter()
            .chain(&h.params)
            .all(|f| uwire::frame::is_valid_name(&f.name) && uwire::frame::is_valid_value(&f.value))
    }
}

fn alt_head() -> alt::RequestHead {
    let h = request_head();
    alt::RequestHead {
        method: h.method,
        scheme: h.scheme,
        authority: h.authority,
        path: h.path,
        query: h.query,
        version: h.version.0,
        headers: HEADERS
            .iter()
            .map(|(n, v)| alt::Header {
                name: Bytes::from_static(n.as_bytes()),
                value: Bytes::from_static(v.as_bytes()),
            })
            .collect(),
        ..Default::default()
    }
}

fn touch_alt(head: &alt::RequestHead) -> usize {
    let mut n = head.method.len() + head.path.len() + head.query.as_ref().map_or(0, |q| q.len());
    for h in &head.headers {
        n += h.name.len() + h.value.len();
    }
    n
}

// ---------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------

fn head_decode(c: &mut Criterion) {
    let text = http_text();
    let frame = request_frame();
    let wire = encoded_frame(&frame);
    // A heap-backed Bytes, so slicing it costs the refcount traffic a real
    // read buffer costs (a `from_static` buffer would hide it).
    let payload = Bytes::copy_from_slice(&wire[HEADER_LEN..]);
    let mut alt_buf = BytesMut::new();
    alt_head().encode(&mut alt_buf).unwrap();
    let alt_payload = alt_buf.freeze();

    // Sanity: every representation carries the same content.
    let want = touch_uwire(&request_head());
    {
        let mut req = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Request::new(&mut req);
        assert!(r.parse(&text).unwrap().is_complete());
        assert_eq!(r.headers.len(), HEADERS.len());
        assert_eq!(text.len(), 673);
        assert_eq!(wire.len(), 747, "frame size");
        let f = Codec::without_preface(Limits::default())
            .decode(&mut wire.clone())
            .unwrap()
            .unwrap();
        assert_eq!(f, frame);
        let a = alt::RequestHead::decode(alt_payload.clone()).unwrap();
        assert!(alt::validate(&a));
        assert_eq!(touch_alt(&a), want);
    }

    let mut g = c.benchmark_group("head_decode");
    g.throughput(Throughput::Elements(1));

    // Every decode variant runs through `batched`: inputs are prepared and
    // outputs dropped outside the timed region, the same way for all.
    g.bench_function("uwire_frame", |b| {
        let mut codec = Codec::without_preface(Limits::default());
        b.iter_custom(|iters| time_frame(&mut codec, &wire, iters))
    });

    // The same, but the decoded frame and the buffer are dropped inside the
    // timed region (the refcount decrements are a real per-request cost).
    g.bench_function("uwire_frame_incl_drop", |b| {
        let mut codec = Codec::without_preface(Limits::default());
        b.iter_custom(|iters| {
            batched(
                iters,
                || read_buffer(&wire),
                |mut buf| {
                    let Some(Frame::Request(req)) = codec.decode(&mut buf).unwrap() else {
                        unreachable!()
                    };
                    black_box(touch_uwire(req.head()))
                },
            )
        })
    });

    g.bench_function("uwire_payload", |b| {
        b.iter_custom(|iters| time_payload(&payload, iters))
    });

    // The floor under the uwire rows: a head already decoded, only read
    // (every header name and value), through the same harness.
    let decoded = RequestHead::decode_unbounded(payload.clone()).unwrap();
    g.bench_function("uwire_iterate_only", |b| {
        b.iter_custom(|iters| batched(iters, || &decoded, |h| black_box(touch_uwire(h))))
    });

    g.bench_function("httparse", |b| {
        b.iter_custom(|iters| time_httparse(&text, iters))
    });

    g.bench_function("prost_repeated_payload", |b| {
        b.iter_custom(|iters| {
            batched(
                iters,
                || alt_payload.clone(),
                |p| {
                    let head = alt::RequestHead::decode(p).unwrap();
                    assert!(alt::validate(&head));
                    black_box(touch_alt(&head));
                    head
                },
            )
        })
    });
    g.finish();
}

/// `iters` REQUEST frames decoded from fresh read buffers, every field a
/// server needs and every header read (the `uwire_frame` row). The decoded
/// frames and buffers are returned to `batched`, which drops them outside
/// the timing: httparse's borrowed output has nothing to drop.
fn time_frame(codec: &mut Codec, wire: &[u8], iters: u64) -> Duration {
    batched(
        iters,
        || read_buffer(wire),
        |mut buf| {
            let Some(Frame::Request(req)) = codec.decode(&mut buf).unwrap() else {
                unreachable!()
            };
            black_box(touch_uwire(req.head()));
            (req, buf)
        },
    )
}

/// `iters` REQUEST payloads decoded into heads and read (the
/// `uwire_payload` row): the frame header and the split left out.
fn time_payload(payload: &Bytes, iters: u64) -> Duration {
    batched(
        iters,
        || payload.clone(),
        |p| {
            let head = RequestHead::decode_unbounded(p).unwrap();
            black_box(touch_uwire(&head));
            head
        },
    )
}

/// `iters` parses of the same head as HTTP/1.1 text by httparse, every
/// header read (the `httparse` row).
fn time_httparse(text: &[u8], iters: u64) -> Duration {
    batched(
        iters,
        || text,
        |text| {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            let status = req.parse(black_box(text)).unwrap();
            assert!(status.is_complete());
            let mut n = req.method.unwrap().len() + req.path.unwrap().len();
            for h in req.headers.iter() {
                n += h.name.len() + h.value.len();
            }
            black_box(n)
        },
    )
}

/// Runs `routine` `iters` times on inputs made by `setup` and returns the
/// time spent in `routine` only. Inputs are made and outputs dropped in
/// small chunks outside the timed region; the chunk is small enough that the
/// inputs stay in L1 (like httparse's single input) and the output vector is
/// reused, so neither allocation nor page faults land in the measurement
/// (criterion's `iter_batched` allocates a fresh output vector per batch).
fn batched<I, O>(
    iters: u64,
    mut setup: impl FnMut() -> I,
    mut routine: impl FnMut(I) -> O,
) -> Duration {
    const CHUNK: usize = 16;
    let mut inputs = Vec::with_capacity(CHUNK);
    let mut outputs = Vec::with_capacity(CHUNK);
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        inputs.extend((0..n).map(|_| setup()));
        let start = Instant::now();
        for input in inputs.drain(..) {
            outputs.push(routine(input));
        }
        total += start.elapsed();
        black_box(&outputs);
        outputs.clear();
        left -= n as u64;
    }
    total
}

fn head_encode(c: &mut Criterion) {
    let frame = request_frame();
    let alt = alt_head();

    let mut g = c.benchmark_group("head_encode");
    g.throughput(Throughput::Elements(1));

    g.bench_function("uwire_frame", |b| {
        let mut codec = Codec::without_preface(Limits::default());
        let mut buf = BytesMut::with_capacity(1024);
        b.iter(|| {
            buf.clear();
            codec.encode(black_box(&frame), &mut buf).unwrap();
            black_box(buf.len())
        })
    });

    // What a proxy does per request: build the block from its parsed header
    // pairs (validating each), then encode the frame.
    g.bench_function("uwire_build_and_frame", |b| {
        let mut codec = Codec::without_preface(Limits::default());
        let mut buf = BytesMut::with_capacity(1024);
        b.iter(|| {
            let mut head = RequestHead {
                method: Bytes::from_static(METHOD.as_bytes()),
                scheme: Bytes::from_static(b"https"),
                authority: Bytes::from_static(HEADERS[0].1.as_bytes()),
                path: Bytes::from_static(PATH.as_bytes()),
                query: Some(Bytes::from_static(QUERY.as_bytes())),
                version: HttpVersion::HTTP_11,
                ..RequestHead::default()
            };
            head.headers = HeaderBlock::try_from_pairs(black_box(HEADERS)).unwrap();
            let f: Frame = Request::new(StreamId::new(1), head, true).into();
            buf.clear();
            codec.encode(&f, &mut buf).unwrap();
            black_box(buf.len())
        })
    });

    g.bench_function("httparse_text", |b| {
        let mut v = Vec::with_capacity(1024);
        b.iter(|| {
            v.clear();
            write_http(&mut v);
            black_box(v.len())
        })
    });

    g.bench_function("prost_repeated_payload", |b| {
        let mut buf = BytesMut::with_capacity(1024);
        b.iter(|| {
            buf.clear();
            black_box(&alt).encode(&mut buf).unwrap();
            black_box(buf.len())
        })
    });
    g.finish();
}

fn data_frames(c: &mut Criterion) {
    const SIZE: usize = 64 * 1024;
    let body = Bytes::from(vec![0xA5u8; SIZE]);
    let frame: Frame = Data::new(StreamId::new(1), body, false).into();
    let wire = encoded_frame(&frame);

    let mut g = c.benchmark_group("data_64k");
    g.throughput(Throughput::Bytes(SIZE as u64));

    g.bench_function("encode", |b| {
        let mut codec = Codec::without_preface(Limits::default());
        let mut buf = BytesMut::with_capacity(SIZE + HEADER_LEN);
        b.iter(|| {
            buf.clear();
            codec.encode(black_box(&frame), &mut buf).unwrap();
            black_box(buf.len())
        })
    });

    g.bench_function("decode", |b| {
        let mut codec = Codec::without_preface(Limits::default());
        b.iter_custom(|iters| {
            batched(
                iters,
                || read_buffer(&wire),
                |mut buf| {
                    let Some(Frame::Data(d)) = codec.decode(&mut buf).unwrap() else {
                        unreachable!()
                    };
                    black_box(d.payload().len());
                    (d, buf)
                },
            )
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = head_decode, head_encode, data_frames
}

/// Interleaved head-decode rounds (`UWIRE_CODEC_INTERLEAVED=<file.json>`,
/// run by `scripts/bench-codec`): each round times the `uwire_frame`,
/// `uwire_payload` and `httparse` rows back to back, in an order that
/// rotates from round to round, and the file gets every round's ns per
/// decode. Criterion times one row after another, seconds apart, so on a
/// shared machine whose speed drifts by half over minutes a ratio of two
/// of its medians can be off by as much; rows timed within milliseconds of
/// each other see the same machine, and the median of the per-round ratios
/// is what `scripts/bench-codec` checks the target with.
/// `UWIRE_CODEC_ROUNDS` (default 31) and `UWIRE_CODEC_ITERS` (decodes per
/// row and round, default 50,000) size the run.
fn interleaved(out: &std::path::Path) {
    fn env(name: &str, default: u64) -> u64 {
        std::env::var(name).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: not a number: {v}"))
        })
    }
    let rounds = env("UWIRE_CODEC_ROUNDS", 31).max(1);
    let iters = env("UWIRE_CODEC_ITERS", 50_000).max(1);
    let text = http_text();
    let wire = encoded_frame(&request_frame());
    let payload = Bytes::copy_from_slice(&wire[HEADER_LEN..]);
    let mut codec = Codec::without_preface(Limits::default());
    let names = ["uwire_frame", "uwire_payload", "httparse"];
    let mut ns: [Vec<f64>; 3] = Default::default();
    // One round's worth of each row first, not recorded: page faults,
    // cold caches and the CPU-feature detection land there.
    for round in 0..=rounds {
        for k in 0..3 {
            let row = (k + round as usize) % 3;
            let t = match row {
                0 => time_frame(&mut codec, &wire, iters),
                1 => time_payload(&payload, iters),
                _ => time_httparse(&text, iters),
            };
            if round > 0 {
                ns[row].push(t.as_nanos() as f64 / iters as f64);
            }
        }
    }
    let mut json =
        format!("{{\"rounds\": {rounds}, \"iters\": {iters}, \"allocator\": \"{ALLOCATOR}\"");
    for (name, v) in names.iter().zip(&ns) {
        let list: Vec<String> = v.iter().map(|x| format!("{x:.2}")).collect();
        json += &format!(", \"{name}\": [{}]", list.join(", "));
    }
    json += "}\n";
    std::fs::write(out, json).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    eprintln!(
        "head_decode interleaved ({ALLOCATOR} allocator): {rounds} rounds of {iters} decodes \
         per row, written to {}",
        out.display()
    );
}

fn main() {
    match std::env::var_os("UWIRE_CODEC_INTERLEAVED") {
        Some(out) => interleaved(std::path::Path::new(&out)),
        None => {
            benches();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
