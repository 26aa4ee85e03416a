#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/<target>/ for the uwire fuzz targets.

Seeds come from the shared test vectors (tests/vectors/frames_valid.json,
frames_invalid.json, engine_valid.json, engine_invalid.json), translated
into each target's input format, plus a few frames built here so the corpus
is never empty even without the vectors. Seed files are named by the hash of
their content, so re-running only adds what is missing and never disturbs
what the fuzzer has found since. The corpus directory is generated at fuzz
time and is not committed.

    python3 fuzz/seeds.py            # writes fuzz/corpus/{frame_decoder,heads,engine,uwsgi,http_front}/
    python3 fuzz/seeds.py --out DIR  # somewhere else

Python 3 standard library only.
"""

import argparse
import hashlib
import json
import pathlib
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"
PREFACE = bytes([0x9A, 0x55, 0x57, 0x31, 0xFF, 0xFF, 0x0D, 0x0A])

# ---------------------------------------------------------------------------
# Minimal wire encoders for the built-in seeds.
# ---------------------------------------------------------------------------


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_bytes(tag, value):
    return varint(tag << 3 | 2) + varint(len(value)) + value


def pb_varint(tag, value):
    return varint(tag << 3) + varint(value)


def block(pairs):
    out = b""
    for name, value in pairs:
        out += struct.pack(">H", len(name)) + name + struct.pack(">I", len(value)) + value
    return out


def request_head(headers=((b"Host", b"example.com"), (b"Accept", b"*/*"))):
    return (
        pb_bytes(1, b"GET")
        + pb_bytes(2, b"https")
        + pb_bytes(3, b"example.com")
        + pb_bytes(4, b"/index.html")
        + pb_bytes(5, b"a=1")
        + pb_varint(6, 2)
        + pb_bytes(7, block(headers))
        + pb_bytes(8, b"192.0.2.1")
        + pb_varint(9, 40000)
        + pb_varint(12, 1)
        + pb_bytes(13, block([(b"REMOTE_USER", b"alice")]))
        + pb_varint(14, 5)
    )


def response_head(status=200):
    return pb_varint(1, status) + pb_bytes(2, b"OK") + pb_bytes(3, block([(b"content-type", b"text/plain")]))


def builtin_frames():
    """A conversation's worth of frames, one of each kind."""
    settings = pb_varint(1, 128) + pb_varint(2, 65536) + pb_varint(4, 16384)
    return [
        frame(0x05, 0, 0, settings),
        frame(0x01, 0, 1, request_head()),
        frame(0x00, 0, 1, b"hello"),
        frame(0x00, 1, 1, b""),
        frame(0x02, 0, 1, response_head(103)),
        frame(0x02, 0, 1, response_head(200)),
        frame(0x03, 1, 1, block([(b"grpc-status", b"0")])),
        frame(0x04, 0, 3, struct.pack(">I", 8)),
        frame(0x06, 0, 0, b"12345678"),
        frame(0x06, 1, 0, b"12345678"),
        frame(0x07, 0, 0, pb_varint(1, 1) + pb_bytes(3, b"bye")),
        frame(0x08, 0, 0, struct.pack(">I", 1 << 20)),
        frame(0x08, 0, 1, struct.pack(">I", 1024)),
        frame(0x80, 0xF0, 0, b"ext"),
    ]


# ---------------------------------------------------------------------------
# Vector loading
# ---------------------------------------------------------------------------


def load(name):
    path = VECTORS / name
    if not path.exists():
        print(f"seeds: {path.relative_to(ROOT)} not found, using built-in seeds only", file=sys.stderr)
        return []
    return json.loads(path.read_text())["cases"]


def frames_in(wire):
    """Splits complete frames off `wire` (preface already removed)."""
    out = []
    while len(wire) >= 9:
        n = int.from_bytes(wire[:3], "big")
        if len(wire) < 9 + n:
            break
        out.append((wire[3], wire[9 : 9 + n]))
        wire = wire[9 + n :]
    return out


def limits_variant(limits):
    """The frame_decoder limits variant (control bits 0-1) closest to a case."""
    if not limits:
        return 0
    return 1  # every size 1024, 4 headers: covers the single-limit vectors


ENGINE_CONFIG = {
    "{}": 0,
    '{"initial_stream_window": 1024}': 1,
    '{"max_concurrent_streams": 1}': 2,
    '{"max_reset_streams": 0}': 2,
    '{"keepalive_interval_ms": 1000}': 3,
    '{"keepalive_interval_ms": 1000, "ping_timeout_ms": 2000}': 3,
    '{"settings_timeout_ms": 500}': 3,
    '{"max_concurrent_streams": 0}': 6,
    '{"initial_connection_window": 2048, "initial_stream_window": 2048}': 7,
}

REASONS = {"NO_ERROR": 0, "CANCEL": 1, "REFUSED_STREAM": 2}


def advance_op(ms):
    """The engine target's clock op (4) closest to `ms` milliseconds."""
    ops = b""
    while ms > 0:
        for unit, tag in ((60_000, 3), (1000, 2), (50, 1), (1, 0)):
            if ms >= unit:
                n = min(63, ms // unit)
                ops += bytes([4, tag << 6 | n])
                ms -= n * unit
                break
    return ops


def engine_program(case, auto_release):
    """Translates an engine vector case into the engine target's op format."""
    cfg = ENGINE_CONFIG.get(json.dumps(case.get("config", {}), sort_keys=True), 0)
    setup = (1 if case.get("role") == "client" else 0) | cfg << 1 | (0x10 if auto_release else 0)
    out = bytes([setup])
    for step in case["steps"]:
        if "recv_hex" in step:
            data = bytes.fromhex(step["recv_hex"])
            for i in range(0, len(data), 255):
                chunk = data[i : i + 255]
                out += bytes([0, len(chunk)]) + chunk
        elif "advance_ms" in step:
            out += advance_op(int(step["advance_ms"]))
        elif "open_stream" in step:
            # action 0: head selector 0 (GET /), no headers, then end_stream.
            out += bytes([6, 0, 0, 0, 1 if step["open_stream"].get("end_stream") else 0])
        elif "release" in step:
            n = int(step["release"]["bytes"]) & 0xFFFF
            # action 5: first known stream, a 16-bit count.
            out += bytes([6, 5, 0, 1]) + struct.pack(">H", n)
        elif "go_away" in step:
            out += bytes([6, 7, REASONS.get(step["go_away"].get("reason"), 0), 0])
    return out


def http_front_seeds():
    """Requests the front must take or refuse: plain, sized and chunked
    bodies, pipelining, and the smuggling forms of tests/front_conformance.rs."""
    h = b"Host: a\r\n"
    return [
        b"GET / HTTP/1.1\r\n" + h + b"\r\n",
        b"GET /a?b=1 HTTP/1.1\r\n" + h + b"\r\nGET /c HTTP/1.1\r\n" + h + b"Connection: close\r\n\r\n",
        b"POST /e HTTP/1.1\r\n" + h + b"Content-Length: 5\r\n\r\nhello",
        b"POST /e HTTP/1.1\r\n" + h + b"Transfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n",
        b"POST /e HTTP/1.1\r\n" + h + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /e HTTP/1.1\n" + h[:-2] + b"\nContent-Length: 3\nContent-Length: 3\n\nabc",
        b"POST /e HTTP/1.1\r\n" + h + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        b"GET http://t.example:81/x HTTP/1.1\r\nHost: other\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\n" + h + b"\r\n",
        b"GET /x HTTP/1.0\r\n\r\n",
        b"PUT /u HTTP/1.1\r\n" + h + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
    ]


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "fuzz" / "corpus"))
    args = ap.parse_args()
    out = pathlib.Path(args.out)

    seeds = {"frame_decoder": set(), "heads": set(), "engine": set(), "uwsgi": set(), "http_front": set()}

    frame_cases = load("frames_valid.json") + load("frames_invalid.json")
    builtin = builtin_frames()
    wires = [(bytes.fromhex(c["hex"]), c.get("preface", False), c.get("limits", {})) for c in frame_cases]
    wires += [(f, False, {}) for f in builtin]
    wires.append((PREFACE + b"".join(builtin), True, {}))

    for wire, preface, limits in wires:
        for chunking in (0, 3, 7):
            control = limits_variant(limits) | (4 if preface else 0) | chunking << 3
            seeds["frame_decoder"].add(bytes([control]) + wire)
        body = wire[len(PREFACE) :] if preface and wire.startswith(PREFACE) else wire
        for kind, payload in frames_in(body):
            if kind in (0x01, 0x02, 0x03):
                seeds["heads"].add(payload)

    for c in load("engine_valid.json") + load("engine_invalid.json"):
        for auto in (False, True):
            seeds["engine"].add(engine_program(c, auto))
    # A minimal conversation for each role when there are no vectors.
    settings = frame(0x05, 0, 0, b"")
    for role in (0, 1):
        prog = bytes([role | 0x10, 0, len(settings)]) + settings
        if role == 0:
            req = frame(0x01, 0, 1, request_head())
            prog += bytes([0, len(req)]) + req
        seeds["engine"].add(prog)

    # The uwsgi target: one control byte (chunking and limits), then the
    # bytes of a classic uwsgi request packet or a response head.
    for name in ("uwsgi_valid.json", "uwsgi_invalid.json", "uwsgi_response.json"):
        for c in load(name):
            if "hex" not in c:
                continue
            for control in (0x0F, 0x00, 0x23, 0x54, 0x6F):
                seeds["uwsgi"].add(bytes([control]) + bytes.fromhex(c["hex"]))

    # The http_front target: raw HTTP/1.1 bytes of one client connection.
    seeds["http_front"].update(http_front_seeds())

    for target, items in seeds.items():
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        new = 0
        for s in sorted(items):
            p = d / ("seed-" + hashlib.sha1(s).hexdigest())
            if not p.exists():
                p.write_bytes(s)
                new += 1
        print(f"seeds: {target}: {len(items)} seeds ({new} new) in {d.relative_to(ROOT) if d.is_relative_to(ROOT) else d}")


if __name__ == "__main__":
    main()
