#!/usr/bin/env python3
"""Generate the shared uwire/1 test vectors.

Writes tests/vectors/frames_valid.json and tests/vectors/frames_invalid.json.

This script is an *independent* implementation of the uwire/1 wire format
(docs/PROTOCOL.md, proto/uwire/v1/uwire.proto): its own frame
header writer, its own minimal protobuf encoder and its own compact header
block writer. It shares no code with the Rust crate, so the Rust test
(tests/frame_vectors.rs) checks the crate against a second reading of the
spec. Python 3.11, standard library only.

Usage:
    python3 scripts/gen_vectors.py          # (re)write the two JSON files
    python3 scripts/gen_vectors.py --check  # exit 1 if the files are stale

The output is deterministic: running the script twice gives byte-identical
files (sorted keys, fixed case order, indent 2, ASCII only).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "tests" / "vectors"
FORMAT_VERSION = 1

# --------------------------------------------------------------------------
# Wire constants (from the spec, not from the Rust code)
# --------------------------------------------------------------------------

PREFACE = bytes([0x9A, 0x55, 0x57, 0x31, 0xFF, 0xFF, 0x0D, 0x0A])

DATA = 0x00
REQUEST = 0x01
RESPONSE = 0x02
TRAILERS = 0x03
RESET = 0x04
SETTINGS = 0x05
PING = 0x06
GOAWAY = 0x07
WINDOW_UPDATE = 0x08

KIND_NAMES = {
    DATA: "DATA",
    REQUEST: "REQUEST",
    RESPONSE: "RESPONSE",
    TRAILERS: "TRAILERS",
    RESET: "RESET",
    SETTINGS: "SETTINGS",
    PING: "PING",
    GOAWAY: "GOAWAY",
    WINDOW_UPDATE: "WINDOW_UPDATE",
}

END_STREAM = 0x01
ACK = 0x01

REASONS = {
    0: "NO_ERROR",
    1: "PROTOCOL_ERROR",
    2: "INTERNAL_ERROR",
    3: "FLOW_CONTROL_ERROR",
    4: "SETTINGS_TIMEOUT",
    5: "STREAM_CLOSED",
    6: "FRAME_SIZE_ERROR",
    7: "REFUSED_STREAM",
    8: "CANCEL",
    9: "ENHANCE_YOUR_CALM",
    10: "VERSION_MISMATCH",
    11: "LIMIT_EXCEEDED",
    12: "TIMEOUT",
}
REASON_CODES = {v: k for k, v in REASONS.items()}

VERSIONS = {
    0: "UNSPECIFIED",
    1: "HTTP_1_0",
    2: "HTTP_1_1",
    3: "HTTP_2",
    4: "HTTP_3",
    5: "HTTP_0_9",
}
VERSION_CODES = {v: k for k, v in VERSIONS.items()}

DEFAULT_MAX_FRAME_SIZE = 64 * 1024
DEFAULT_MAX_HEAD_SIZE = 1024 * 1024
DEFAULT_MAX_HEADER_COUNT = 256
DEFAULT_MAX_CONTROL_SIZE = 16 * 1024

ERROR_CLASSES = [
    "truncated",
    "bad_preface",
    "unsupported_version",
    "frame_too_large",
    "head_too_large",
    "control_too_large",
    "unknown_kind",
    "bad_flags",
    "bad_stream_id",
    "reserved_bit",
    "bad_length",
    "invalid_protobuf",
    "invalid_header_block",
    "too_many_headers",
    "invalid_head",
    "zero_window_increment",
    "invalid_settings",
]

# --------------------------------------------------------------------------
# Frame header
# --------------------------------------------------------------------------


def header(length: int, kind: int, flags: int, stream_raw: int) -> bytes:
    """The 9-byte frame header. `stream_raw` is the full 32-bit field (so
    tests can set the reserved bit)."""
    assert 0 <= length <= 0xFFFFFF
    assert 0 <= kind <= 0xFF and 0 <= flags <= 0xFF
    assert 0 <= stream_raw <= 0xFFFFFFFF
    return (
        length.to_bytes(3, "big") + bytes([kind, flags]) + stream_raw.to_bytes(4, "big")
    )


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return header(len(payload), kind, flags, stream) + payload


# --------------------------------------------------------------------------
# Minimal protobuf encoder
# --------------------------------------------------------------------------

VARINT, FIXED64, LEN, SGROUP, EGROUP, FIXED32 = 0, 1, 2, 3, 4, 5


def varint(n: int) -> bytes:
    if n < 0:  # int32/int64 negatives are 10-byte two's complement varints
        n += 1 << 64
    assert 0 <= n < (1 << 64)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field: int, wire_type: int) -> bytes:
    return varint((field << 3) | wire_type)


def pb_varint(field: int, value: int) -> bytes:
    return key(field, VARINT) + varint(value)


def pb_bytes(field: int, value: bytes) -> bytes:
    return key(field, LEN) + varint(len(value)) + value


def pb_fixed32(field: int, value: int) -> bytes:
    return key(field, FIXED32) + value.to_bytes(4, "little")


def pb_fixed64(field: int, value: int) -> bytes:
    return key(field, FIXED64) + value.to_bytes(8, "little")


# --------------------------------------------------------------------------
# Compact header block
# --------------------------------------------------------------------------


def block(pairs) -> bytes:
    """A header block (PROTOCOL.md section 5.10): the names and values,
    then a table of their lengths, then the entry count. No entries: 0 bytes."""
    pairs = [(as_bytes(n), as_bytes(v)) for n, v in pairs]
    return raw_block(pairs) if pairs else b""


def raw_block(pairs) -> bytes:
    """A header block from raw (unchecked) entries, in the wire layout."""
    data = b"".join(n + v for n, v in pairs)
    table = b"".join(
        len(n).to_bytes(2, "big") + len(v).to_bytes(4, "big") for n, v in pairs
    )
    return data + table + len(pairs).to_bytes(4, "big")


def as_bytes(v) -> bytes:
    return v.encode("utf-8") if isinstance(v, str) else bytes(v)


# --------------------------------------------------------------------------
# JSON representation of decoded values
# --------------------------------------------------------------------------


def jbytes(v) -> object:
    """Bytes as a JSON string when valid UTF-8, else {"hex": "..."}."""
    b = as_bytes(v)
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": b.hex()}


def jpairs(pairs) -> list:
    return [[jbytes(n), jbytes(v)] for n, v in pairs]


def jreason(code: int) -> object:
    return REASONS.get(code, code)


def jversion(code: int) -> object:
    return VERSIONS.get(code, code)


# --------------------------------------------------------------------------
# Heads: canonical encoders (prost order, proto3 presence rules) + meaning
# --------------------------------------------------------------------------


def request_head_fields(
    method=b"GET",
    scheme=b"",
    authority=b"",
    path=b"/",
    query=None,
    version=0,
    headers=(),
    client_addr=b"",
    client_port=0,
    server_name=b"",
    server_port=0,
    tls=False,
    params=(),
    body_length=None,
    upgrade=None,
):
    return {
        "method": as_bytes(method),
        "scheme": as_bytes(scheme),
        "authority": as_bytes(authority),
        "path": as_bytes(path),
        "query": None if query is None else as_bytes(query),
        "version": VERSION_CODES[version] if isinstance(version, str) else version,
        "headers": [(as_bytes(n), as_bytes(v)) for n, v in headers],
        "client_addr": as_bytes(client_addr),
        "client_port": client_port,
        "server_name": as_bytes(server_name),
        "server_port": server_port,
        "tls": tls,
        "params": [(as_bytes(n), as_bytes(v)) for n, v in params],
        "body_length": body_length,
        "upgrade": None if upgrade is None else as_bytes(upgrade),
    }


def encode_request_head(h) -> bytes:
    out = bytearray()
    if h["method"]:
        out += pb_bytes(1, h["method"])
    if h["scheme"]:
        out += pb_bytes(2, h["scheme"])
    if h["authority"]:
        out += pb_bytes(3, h["authority"])
    if h["path"]:
        out += pb_bytes(4, h["path"])
    if h["query"] is not None:
        out += pb_bytes(5, h["query"])
    if h["version"]:
        out += pb_varint(6, h["version"])
    if h["headers"]:
        out += pb_bytes(7, block(h["headers"]))
    if h["client_addr"]:
        out += pb_bytes(8, h["client_addr"])
    if h["client_port"]:
        out += pb_varint(9, h["client_port"])
    if h["server_name"]:
        out += pb_bytes(10, h["server_name"])
    if h["server_port"]:
        out += pb_varint(11, h["server_port"])
    if h["tls"]:
        out += pb_varint(12, 1)
    if h["params"]:
        out += pb_bytes(13, block(h["params"]))
    if h["body_length"] is not None:
        out += pb_varint(14, h["body_length"])
    if h["upgrade"] is not None:
        out += pb_bytes(15, h["upgrade"])
    return bytes(out)


def request_head_meaning(h) -> dict:
    return {
        "method": jbytes(h["method"]),
        "scheme": jbytes(h["scheme"]),
        "authority": jbytes(h["authority"]),
        "path": jbytes(h["path"]),
        "query": None if h["query"] is None else jbytes(h["query"]),
        "version": jversion(h["version"]),
        "headers": jpairs(h["headers"]),
        "client_addr": jbytes(h["client_addr"]),
        "client_port": h["client_port"],
        "server_name": jbytes(h["server_name"]),
        "server_port": h["server_port"],
        "tls": h["tls"],
        "params": jpairs(h["params"]),
        "body_length": h["body_length"],
        "upgrade": None if h["upgrade"] is None else jbytes(h["upgrade"]),
    }


def encode_response_head(status: int, reason=None, headers=()) -> bytes:
    out = bytearray()
    if status:
        out += pb_varint(1, status)
    if reason is not None:
        out += pb_bytes(2, as_bytes(reason))
    hb = block(headers)
    if hb:
        out += pb_bytes(3, hb)
    return bytes(out)


SETTING_FIELDS = [
    "max_concurrent_streams",
    "initial_stream_window",
    "initial_connection_window",
    "max_frame_size",
    "max_head_size",
    "max_header_count",
]


def encode_settings(**values) -> bytes:
    out = bytearray()
    for i, name in enumerate(SETTING_FIELDS, start=1):
        if values.get(name) is not None:
            out += pb_varint(i, values[name])
    return bytes(out)


def encode_goaway(last: int, code: int, debug=b"") -> bytes:
    out = bytearray()
    if last:
        out += pb_varint(1, last)
    if code:
        out += pb_varint(2, code)
    if debug:
        out += pb_bytes(3, as_bytes(debug))
    return bytes(out)


# --------------------------------------------------------------------------
# Frame builders returning (bytes, meaning)
# --------------------------------------------------------------------------


def f_data(stream, payload=b"", end=False, extra_flags=0):
    payload = as_bytes(payload)
    flags = (END_STREAM if end else 0) | extra_flags
    return frame(DATA, flags, stream, payload), {
        "kind": "DATA",
        "stream": stream,
        "end_stream": end,
        "payload_hex": payload.hex(),
    }


def f_request(stream, end=False, extra_flags=0, payload=None, **head):
    h = request_head_fields(**head)
    if payload is None:
        payload = encode_request_head(h)
    flags = (END_STREAM if end else 0) | extra_flags
    return frame(REQUEST, flags, stream, payload), {
        "kind": "REQUEST",
        "stream": stream,
        "end_stream": end,
        "head": request_head_meaning(h),
    }


def f_response(
    stream, status, reason=None, headers=(), end=False, extra_flags=0, payload=None
):
    if payload is None:
        payload = encode_response_head(status, reason, headers)
    flags = (END_STREAM if end else 0) | extra_flags
    return frame(RESPONSE, flags, stream, payload), {
        "kind": "RESPONSE",
        "stream": stream,
        "end_stream": end,
        "head": {
            "status": status,
            "reason": None if reason is None else jbytes(reason),
            "headers": jpairs(headers),
        },
    }


def f_trailers(stream, fields=(), extra_flags=0):
    return frame(TRAILERS, END_STREAM | extra_flags, stream, block(fields)), {
        "kind": "TRAILERS",
        "stream": stream,
        "fields": jpairs(fields),
    }


def f_reset(stream, code, extra_flags=0):
    return frame(RESET, extra_flags, stream, code.to_bytes(4, "big")), {
        "kind": "RESET",
        "stream": stream,
        "reason": jreason(code),
    }


def f_settings(extra_flags=0, payload=None, **values):
    if payload is None:
        payload = encode_settings(**values)
    meaning = {"kind": "SETTINGS"}
    for name in SETTING_FIELDS:
        meaning[name] = values.get(name)
    return frame(SETTINGS, extra_flags, 0, payload), meaning


def f_ping(payload: bytes, ack=False, extra_flags=0):
    assert len(payload) == 8
    flags = (ACK if ack else 0) | extra_flags
    return frame(PING, flags, 0, payload), {
        "kind": "PING",
        "ack": ack,
        "payload_hex": payload.hex(),
    }


def f_goaway(last, code, debug=b"", extra_flags=0, payload=None):
    if payload is None:
        payload = encode_goaway(last, code, debug)
    return frame(GOAWAY, extra_flags, 0, payload), {
        "kind": "GOAWAY",
        "last_stream": last,
        "reason": jreason(code),
        "debug": jbytes(debug),
    }


def f_window_update(stream, increment, extra_flags=0):
    return frame(WINDOW_UPDATE, extra_flags, stream, increment.to_bytes(4, "big")), {
        "kind": "WINDOW_UPDATE",
        "stream": stream,
        "increment": increment,
    }


def f_unknown(kind_code, flags, stream, payload):
    assert kind_code >= 0x80
    payload = as_bytes(payload)
    return frame(kind_code, flags, stream, payload), {
        "kind": "UNKNOWN",
        "kind_code": kind_code,
        "flags": flags,
        "stream": stream,
        "payload_hex": payload.hex(),
    }


def pattern(n: int, seed: int = 0) -> bytes:
    """Deterministic filler bytes."""
    return bytes((seed + i * 7 + (i >> 8)) & 0xFF for i in range(n))


REALISTIC_HEADERS = [
    ("Host", "www.example.com"),
    (
        "User-Agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.5"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"),
    ("Referer", "https://www.example.com/search?q=uwire"),
    ("Connection", "keep-alive"),
    ("Cookie", "session=8f14e45fceea167a5a36dedd4bea2543; theme=dark"),
    ("Upgrade-Insecure-Requests", "1"),
    ("Sec-Fetch-Dest", "document"),
    ("Sec-Fetch-Mode", "navigate"),
    ("Sec-Fetch-Site", "same-origin"),
    ("Sec-Fetch-User", "?1"),
    ("Priority", "u=0, i"),
    ("Cache-Control", "max-age=0"),
    ("If-None-Match", 'W/"5e15153d-120f"'),
    ("If-Modified-Since", "Tue, 07 Jan 2025 12:00:00 GMT"),
    ("X-Forwarded-For", "198.51.100.17, 203.0.113.5"),
    ("X-Request-Id", "7c9e6679-7425-40de-944b-e07fc1f90ae7"),
    ("DNT", "1"),
]
assert len(REALISTIC_HEADERS) == 20


# --------------------------------------------------------------------------
# Valid cases
# --------------------------------------------------------------------------

# docs/PROTOCOL.md section 5.11 ("The whole frame (116 bytes)").
DOCS_WORKED_EXAMPLE = """
00 00 6F 01 01 00 00 00 01 0A 03 47 45 54 12 04 68 74 74 70 1A 0B 65 78 61 6D
70 6C 65 2E 63 6F 6D 22 06 2F 68 65 6C 6C 6F 2A 03 78 3D 31 30 02 3A 28 48 6F
73 74 65 78 61 6D 70 6C 65 2E 63 6F 6D 41 63 63 65 70 74 2A 2F 2A 00 04 00 00
00 0B 00 06 00 00 00 03 00 00 00 02 42 09 31 39 32 2E 30 2E 32 2E 31 48 B8 8E
03 52 0B 65 78 61 6D 70 6C 65 2E 63 6F 6D 58 50
"""


def valid(
    name, description, frames, *, preface=False, limits=None, canonical=True, raw=None
):
    """`frames` is a list of (bytes, meaning). `raw` overrides the bytes
    (used when frames were concatenated with something else)."""
    wire = b"".join(b for b, _ in frames) if raw is None else raw
    if preface:
        wire = PREFACE + wire
    return {
        "name": name,
        "description": description,
        "limits": limits or {},
        "preface": preface,
        "canonical": canonical,
        "hex": wire.hex(),
        "frames": [m for _, m in frames],
    }


def pad_request_to(size: int, stream: int, end: bool = False, **head):
    """A REQUEST whose payload is exactly `size` bytes, padded with an
    X-Pad header value."""
    for pad in range(size):
        h = dict(head)
        h["headers"] = list(head.get("headers", ())) + [("X-Pad", "p" * pad)]
        fields = request_head_fields(**h)
        if len(encode_request_head(fields)) == size:
            return f_request(stream, end=end, **h)
    raise AssertionError("cannot pad request")


def pad_goaway_to(size: int, last: int, code: int):
    for pad in range(size):
        debug = b"d" * pad
        if len(encode_goaway(last, code, debug)) == size:
            return f_goaway(last, code, debug)
    raise AssertionError("cannot pad goaway")


def valid_cases():
    c = []

    # ---- DATA
    c.append(
        valid("data_empty", "DATA with an empty payload and no flags", [f_data(1, b"")])
    )
    c.append(
        valid(
            "data_end_stream",
            "DATA with END_STREAM and a short text payload",
            [f_data(1, "hello", end=True)],
        )
    )
    c.append(
        valid(
            "data_binary_max_stream_id",
            "DATA carrying every byte value 0x00..0xFF on the largest stream id (2^31-1)",
            [f_data(0x7FFFFFFF, bytes(range(256)))],
        )
    )
    c.append(
        valid(
            "data_at_max_frame_size",
            "DATA payload exactly at max_frame_size (overridden to 1024)",
            [f_data(3, pattern(1024), end=True)],
            limits={"max_frame_size": 1024},
        )
    )
    c.append(
        valid(
            "data_empty_end_stream",
            "empty DATA that only ends the stream",
            [f_data(5, b"", end=True)],
        )
    )

    # ---- REQUEST
    c.append(
        valid(
            "request_upgrade_websocket",
            "a WebSocket handshake offered as an upgrade (section 7.5): field 15 = websocket, no END_STREAM",
            [
                f_request(
                    1,
                    method="GET",
                    path="/chat",
                    version="HTTP_1_1",
                    headers=[
                        ("host", "example.com"),
                        ("connection", "Upgrade"),
                        ("upgrade", "websocket"),
                        ("sec-websocket-version", "13"),
                        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                    ],
                    upgrade="websocket",
                )
            ],
        )
    )
    c.append(
        valid(
            "request_upgrade_empty_protocol",
            "an upgrade offer whose protocol is empty bytes (present: the field decides, not its value)",
            [f_request(3, method="GET", path="/", upgrade=b"")],
        )
    )
    c.append(
        valid(
            "request_upgrade_extended_connect",
            "an HTTP/2 extended CONNECT carried as an upgrade offer (method CONNECT, :protocol websocket)",
            [
                f_request(
                    5,
                    method="CONNECT",
                    scheme="https",
                    authority="example.com",
                    path="/chat",
                    version="HTTP_2",
                    upgrade="websocket",
                )
            ],
        )
    )
    c.append(
        valid(
            "request_minimal",
            "smallest useful REQUEST: method and path only, END_STREAM (no body)",
            [f_request(1, end=True, method="GET", path="/")],
        )
    )
    c.append(
        valid(
            "request_realistic_20_headers",
            "a browser-like HTTPS GET with 20 header fields, query, client and server addresses, TLS and params",
            [
                f_request(
                    1,
                    end=True,
                    method="GET",
                    scheme="https",
                    authority="www.example.com",
                    path="/articles/2025/uwire%20intro.html",
                    query="utm_source=feed&lang=en",
                    version="HTTP_1_1",
                    headers=REALISTIC_HEADERS,
                    client_addr="198.51.100.17",
                    client_port=51432,
                    server_name="www.example.com",
                    server_port=443,
                    tls=True,
                    params=[
                        ("DOCUMENT_ROOT", "/srv/www"),
                        ("UWSGI_SCRIPT", "app:application"),
                    ],
                )
            ],
        )
    )
    # The worked example of docs/PROTOCOL.md section 5.11, byte for byte.
    example = f_request(
        1,
        end=True,
        method="GET",
        scheme="http",
        authority="example.com",
        path="/hello",
        query="x=1",
        version="HTTP_1_1",
        headers=[("Host", "example.com"), ("Accept", "*/*")],
        client_addr="192.0.2.1",
        client_port=51000,
        server_name="example.com",
        server_port=80,
    )
    assert example[0] == bytes.fromhex(DOCS_WORKED_EXAMPLE), (
        "docs/PROTOCOL.md 5.11 example differs"
    )
    c.append(
        valid(
            "request_docs_worked_example",
            "the REQUEST worked example of docs/PROTOCOL.md section 5.11",
            [example],
        )
    )
    c.append(
        valid(
            "request_repeated_mixed_case_headers",
            "repeated header names with different case keep their order and spelling; empty value allowed",
            [
                f_request(
                    3,
                    method="POST",
                    scheme="http",
                    authority="api.local:8080",
                    path="/v1/items",
                    version="HTTP_1_1",
                    headers=[
                        ("Cookie", "a=1"),
                        ("content-type", "application/json"),
                        ("cookie", "b=2"),
                        ("COOKIE", "c=3"),
                        ("X-Empty", ""),
                        ("x-weird!#$%&'*+-.^_`|~", "token chars in the name"),
                        ("Content-Length", "2"),
                    ],
                    body_length=2,
                ),
                f_data(3, "{}", end=True),
            ],
        )
    )
    c.append(
        valid(
            "request_non_utf8_bytes",
            "path, query, authority, header value and param value that are not valid UTF-8 (obs-text / latin-1 bytes)",
            [
                f_request(
                    5,
                    end=True,
                    method="GET",
                    scheme="http",
                    authority=b"caf\xe9.example",
                    path=b"/caf\xe9/\xff\xfe",
                    query=b"q=\xc3\x28",
                    version="HTTP_1_0",
                    headers=[("X-Latin1", b"\xe9t\xe9"), ("X-Tab", b"a\tb\x7f\x80")],
                    params=[("PATH_INFO", b"/\xe9")],
                )
            ],
        )
    )
    c.append(
        valid(
            "request_query_absent",
            "no query field at all: the target had no '?'",
            [f_request(7, end=True, method="GET", path="/search")],
        )
    )
    c.append(
        valid(
            "request_query_empty",
            "query present but empty: the target ended with a bare '?' (field 5 with length 0 on the wire)",
            [f_request(7, end=True, method="GET", path="/search", query="")],
        )
    )
    c.append(
        valid(
            "request_body_length_zero",
            "body_length present and 0 (optional field emitted although zero), no END_STREAM",
            [
                f_request(9, method="PUT", path="/empty", body_length=0),
                f_data(9, b"", end=True),
            ],
        )
    )
    c.append(
        valid(
            "request_body_length_large",
            "body_length above 2^32 (uint64), HTTP/2 client, IPv6 client address, TLS",
            [
                f_request(
                    11,
                    method="POST",
                    scheme="https",
                    authority="[2001:db8::1]:8443",
                    path="/upload",
                    version="HTTP_2",
                    client_addr="2001:db8::42",
                    client_port=65535,
                    server_name="upload.example",
                    server_port=8443,
                    tls=True,
                    body_length=(1 << 40) + 5,
                )
            ],
        )
    )
    c.append(
        valid(
            "request_unknown_http_version",
            "a version number the enum does not name (7) is kept as an integer",
            [f_request(13, end=True, method="GET", path="/", version=7)],
        )
    )
    c.append(
        valid(
            "request_all_versions",
            "one REQUEST per named HTTP version, including UNSPECIFIED (field omitted)",
            [
                f_request(s, end=True, method="GET", path="/v", version=v)
                for s, v in zip(
                    (15, 17, 19, 21, 23, 25),
                    (
                        "UNSPECIFIED",
                        "HTTP_0_9",
                        "HTTP_1_0",
                        "HTTP_1_1",
                        "HTTP_2",
                        "HTTP_3",
                    ),
                )
            ],
        )
    )
    c.append(
        valid(
            "request_headers_at_max_header_count",
            "headers and params each with exactly max_header_count (overridden to 4) entries",
            [
                f_request(
                    1,
                    end=True,
                    method="GET",
                    path="/",
                    headers=[("A", "1"), ("B", "2"), ("C", "3"), ("D", "4")],
                    params=[("P1", "x"), ("P2", "y"), ("P3", "z"), ("P4", "w")],
                )
            ],
            limits={"max_header_count": 4},
        )
    )
    c.append(
        valid(
            "request_at_max_head_size",
            "REQUEST payload exactly at max_head_size (overridden to 1024)",
            [pad_request_to(1024, 1, end=True, method="GET", path="/padded")],
            limits={"max_head_size": 1024},
        )
    )
    # Unknown protobuf fields (non-canonical: re-encoding drops them).
    h = request_head_fields(
        method="GET", path="/x", version="HTTP_1_1", headers=[("Host", "h")]
    )
    payload = (
        encode_request_head(h)
        + pb_varint(99, 12345)
        + pb_bytes(100, b"future extension")
        + pb_fixed32(101, 0xDEADBEEF)
        + pb_fixed64(102, 0x0123456789ABCDEF)
        + pb_varint(536870911, 1)  # largest field number
    )
    c.append(
        valid(
            "request_unknown_protobuf_fields",
            "RequestHead with unknown fields 99 (varint), 100 (length-delimited), 101 (fixed32), 102 (fixed64), 536870911 (varint): ignored",
            [f_request(1, end=True, payload=payload, **h)],
            canonical=False,
        )
    )
    # Fields out of order.
    h = request_head_fields(
        method="DELETE",
        path="/item/1",
        authority="a.example",
        version="HTTP_1_1",
        headers=[("Host", "a.example")],
        server_port=80,
        tls=False,
    )
    payload = (
        pb_varint(11, 80)
        + pb_bytes(4, b"/item/1")
        + pb_bytes(7, block([("Host", "a.example")]))
        + pb_varint(6, 2)
        + pb_bytes(3, b"a.example")
        + pb_bytes(1, b"DELETE")
    )
    c.append(
        valid(
            "request_fields_out_of_order",
            "RequestHead fields in descending field-number order on the wire (protobuf allows any order)",
            [f_request(1, end=True, payload=payload, **h)],
            canonical=False,
        )
    )
    # A non-repeated field occurring twice: the last occurrence wins.
    h = request_head_fields(method="POST", path="/second", client_port=2)
    payload = (
        pb_bytes(1, b"GET")
        + pb_bytes(4, b"/first")
        + pb_varint(9, 1)
        + pb_bytes(1, b"POST")
        + pb_bytes(4, b"/second")
        + pb_varint(9, 2)
    )
    c.append(
        valid(
            "request_repeated_scalar_last_wins",
            "method, path and client_port each sent twice: the last occurrence wins (standard protobuf rule)",
            [f_request(1, end=True, payload=payload, **h)],
            canonical=False,
        )
    )
    # Default-valued fields written explicitly (proto3 encoders omit them).
    h = request_head_fields(method="GET", path="/d")
    payload = (
        pb_bytes(1, b"GET")
        + pb_bytes(2, b"")
        + pb_bytes(4, b"/d")
        + pb_varint(6, 0)
        + pb_varint(9, 0)
        + pb_varint(12, 0)
        + pb_bytes(13, b"")
    )
    c.append(
        valid(
            "request_explicit_default_fields",
            "proto3 scalar fields explicitly set to their default (empty scheme, version 0, port 0, tls false, empty params) decode like absent fields",
            [f_request(1, end=True, payload=payload, **h)],
            canonical=False,
        )
    )

    # ---- RESPONSE
    c.append(
        valid(
            "response_200_with_headers",
            "final RESPONSE with headers, body follows",
            [
                f_response(
                    1,
                    200,
                    headers=[
                        ("Content-Type", "text/html; charset=utf-8"),
                        ("Content-Length", "5"),
                        ("Set-Cookie", "a=1; Path=/"),
                        ("Set-Cookie", "b=2; Path=/"),
                    ],
                ),
                f_data(1, "hello", end=True),
            ],
        )
    )
    c.append(
        valid(
            "response_204_end_stream_with_reason",
            "final RESPONSE with END_STREAM and a reason phrase",
            [f_response(3, 204, reason="No Content", end=True)],
        )
    )
    c.append(
        valid(
            "response_reason_empty",
            "reason present but empty (field 2 with length 0) differs from absent",
            [f_response(5, 200, reason="", end=True)],
        )
    )
    c.append(
        valid(
            "response_reason_non_utf8",
            "reason phrase with a latin-1 byte and a tab: allowed (only NUL, CR, LF are forbidden)",
            [f_response(5, 404, reason=b"Introuvable\t\xe9", end=True)],
        )
    )
    c.append(
        valid(
            "response_interim_then_final",
            "interim 100 Continue and 103 Early Hints (no END_STREAM) before the final 200, then DATA and TRAILERS",
            [
                f_response(7, 100),
                f_response(
                    7, 103, headers=[("Link", "</style.css>; rel=preload; as=style")]
                ),
                f_response(7, 200, headers=[("Content-Type", "text/plain")]),
                f_data(7, "ok"),
                f_trailers(7, [("grpc-status", "0"), ("X-Checksum", "abc")]),
            ],
        )
    )
    c.append(
        valid(
            "response_status_edges",
            "status 101 (interim, no END_STREAM) and 999 (largest allowed)",
            [
                f_response(9, 101, headers=[("Upgrade", "websocket")]),
                f_response(11, 999, end=True),
            ],
        )
    )

    # ---- TRAILERS
    c.append(
        valid(
            "trailers_fields",
            "TRAILERS (always END_STREAM) with two fields",
            [f_trailers(1, [("grpc-status", "0"), ("grpc-message", "OK")])],
        )
    )
    c.append(
        valid(
            "trailers_empty",
            "TRAILERS with an empty block (zero-length payload)",
            [f_trailers(3, [])],
        )
    )

    near = bytes([0x01, 0x09, 0x0B, 0x0C, 0x0E, 0x8A, 0x8D, 0x80, 0x7F, 0xFF, 0x20])
    long_ok = bytes(b for b in pattern(300, 5) if b not in (0x00, 0x0A, 0x0D))[:200]
    c.append(
        valid(
            "header_values_near_forbidden_bytes",
            "values of lengths 7, 11, 16, 33 and 200 made of bytes next to NUL/CR/LF (0x01, 0x0B, 0x0C, 0x0E, 0x8A, 0x8D, 0x80...) and a 64-byte name: all valid",
            [
                f_trailers(
                    1,
                    [
                        ("a", near[:7]),
                        ("b", near),
                        ("c", (near + near)[:16]),
                        ("d", (near * 3)[:33]),
                        ("e", long_ok),
                        ("X-" + "n" * 62, "long name"),
                    ],
                )
            ],
        )
    )

    # ---- RESET
    c.append(valid("reset_cancel", "RESET with CANCEL", [f_reset(1, 8)]))
    c.append(
        valid(
            "reset_all_known_codes",
            "RESET with every reason code uwire/1 defines",
            [f_reset(2 * i + 1, i) for i in range(13)],
        )
    )
    c.append(
        valid(
            "reset_unknown_code",
            "an undefined reason code is kept as an integer",
            [f_reset(0x7FFFFFFF, 0xDEADBEEF)],
        )
    )

    # ---- SETTINGS
    c.append(
        valid(
            "settings_empty",
            "SETTINGS with no fields: every value defaults",
            [f_settings()],
        )
    )
    c.append(
        valid(
            "settings_all_fields",
            "SETTINGS with all six fields set",
            [
                f_settings(
                    max_concurrent_streams=100,
                    initial_stream_window=262144,
                    initial_connection_window=1048576,
                    max_frame_size=16384,
                    max_head_size=65536,
                    max_header_count=128,
                )
            ],
        )
    )
    c.append(
        valid(
            "settings_zero_values",
            "optional fields set to 0 are emitted and mean 0, not the default",
            [
                f_settings(
                    max_concurrent_streams=0,
                    initial_stream_window=0,
                    initial_connection_window=0,
                )
            ],
        )
    )
    c.append(
        valid(
            "settings_range_edges",
            "every range edge: windows 2^31-1, sizes 1024 and 16777215, header count 1",
            [
                f_settings(
                    max_concurrent_streams=0xFFFFFFFF,
                    initial_stream_window=0x7FFFFFFF,
                    initial_connection_window=0x7FFFFFFF,
                    max_frame_size=0xFFFFFF,
                    max_head_size=1024,
                    max_header_count=1,
                )
            ],
        )
    )
    c.append(
        valid(
            "settings_unknown_protobuf_fields",
            "Settings with unknown fields 7 (varint) and 15 (length-delimited) between known ones: ignored",
            [
                f_settings(
                    payload=pb_varint(1, 10)
                    + pb_varint(7, 1 << 40)
                    + pb_bytes(15, b"\x00\x01future")
                    + pb_varint(4, 2048),
                    max_concurrent_streams=10,
                    max_frame_size=2048,
                )
            ],
            canonical=False,
        )
    )
    c.append(
        valid(
            "settings_fields_out_of_order",
            "Settings fields in reverse order",
            [
                f_settings(
                    payload=pb_varint(6, 64) + pb_varint(3, 4194304) + pb_varint(1, 32),
                    max_concurrent_streams=32,
                    initial_connection_window=4194304,
                    max_header_count=64,
                )
            ],
            canonical=False,
        )
    )
    c.append(
        valid(
            "preface_then_settings",
            "connection start: the 8-byte preface followed by SETTINGS",
            [f_settings(max_concurrent_streams=128, initial_stream_window=262144)],
            preface=True,
        )
    )
    c.append(
        valid(
            "preface_only",
            "just the preface, no frame yet: a clean end",
            [],
            preface=True,
        )
    )

    # ---- PING
    c.append(
        valid("ping", "PING without ACK", [f_ping(bytes.fromhex("0102030405060708"))])
    )
    c.append(
        valid(
            "ping_ack",
            "PING with ACK echoing the payload",
            [f_ping(bytes.fromhex("ffffffffffffffff"), ack=True)],
        )
    )

    # ---- GOAWAY
    c.append(
        valid(
            "goaway_empty_payload",
            "GOAWAY(last 0, NO_ERROR, no debug): every field at its default, zero-length payload",
            [f_goaway(0, 0)],
        )
    )
    c.append(
        valid(
            "goaway_with_debug",
            "GOAWAY with last stream, PROTOCOL_ERROR and debug text",
            [f_goaway(7, 1, "stream 9: bad header block")],
        )
    )
    c.append(
        valid(
            "goaway_max_last_stream_unknown_code",
            "last_stream_id 2^31-1, undefined code, non-UTF-8 debug bytes",
            [f_goaway(0x7FFFFFFF, 0x1000, b"\xff\x00\xfe")],
        )
    )
    c.append(
        valid(
            "goaway_at_max_control_size",
            "GOAWAY payload exactly at max_control_size (overridden to 1024)",
            [pad_goaway_to(1024, 3, 11)],
            limits={"max_control_size": 1024},
        )
    )
    c.append(
        valid(
            "goaway_unknown_protobuf_fields",
            "GoAway with unknown fields 4 (varint), 5 (length-delimited) and 9 (fixed32): ignored",
            [
                f_goaway(
                    5,
                    0,
                    "bye",
                    payload=pb_varint(4, 77)
                    + pb_varint(1, 5)
                    + pb_bytes(5, b"extra")
                    + pb_bytes(3, b"bye")
                    + pb_fixed32(9, 1),
                )
            ],
            canonical=False,
        )
    )

    # ---- WINDOW_UPDATE
    c.append(
        valid(
            "window_update_connection",
            "WINDOW_UPDATE on stream 0 (connection window)",
            [f_window_update(0, 65535)],
        )
    )
    c.append(
        valid(
            "window_update_stream_max",
            "WINDOW_UPDATE on a stream with the largest increment 2^31-1",
            [f_window_update(5, 0x7FFFFFFF)],
        )
    )

    # ---- Extension kinds
    c.append(
        valid(
            "extension_kind_ignored",
            "extension kinds 0x80 and 0xFF with arbitrary flags and streams decode as UNKNOWN (receivers ignore them)",
            [
                f_unknown(0x80, 0xFF, 0, b"ext"),
                f_unknown(0xFF, 0x00, 0x12345, b""),
                f_data(1, "after", end=True),
            ],
        )
    )
    c.append(
        valid(
            "extension_at_max_frame_size",
            "extension frame payload exactly at max_frame_size (overridden to 1024)",
            [f_unknown(0xA5, 0x0F, 9, pattern(1024, 3))],
            limits={"max_frame_size": 1024},
        )
    )
    c.append(
        valid(
            "extension_flag_bits_ignored_on_known_kinds",
            "high-nibble flag bits (0xF0, reserved for extensions) are ignored on every known kind",
            [
                f_data(1, "x", end=True, extra_flags=0xF0),
                f_request(3, end=False, extra_flags=0x80, method="GET", path="/"),
                f_response(3, 200, extra_flags=0x40),
                f_trailers(3, [("a", "b")], extra_flags=0x20),
                f_reset(5, 8, extra_flags=0x10),
                f_settings(extra_flags=0xF0),
                f_ping(bytes(8), ack=True, extra_flags=0xF0),
                f_goaway(0, 0, extra_flags=0xA0),
                f_window_update(0, 1, extra_flags=0x50),
            ],
            canonical=False,
        )
    )

    # ---- Sequences
    c.append(
        valid(
            "sequence_client_connection",
            "a client's side of a connection: preface, SETTINGS, two REQUESTs, body DATA, WINDOW_UPDATE, PING, RESET",
            [
                f_settings(max_concurrent_streams=0, initial_stream_window=65536),
                f_request(
                    1,
                    method="POST",
                    scheme="http",
                    authority="app",
                    path="/form",
                    version="HTTP_1_1",
                    headers=[("Content-Type", "application/x-www-form-urlencoded")],
                    body_length=7,
                ),
                f_data(1, "a=1"),
                f_data(1, "&b=2", end=True),
                f_request(3, end=True, method="GET", path="/slow", version="HTTP_1_1"),
                f_window_update(0, 1 << 20),
                f_window_update(1, 4096),
                f_ping(b"keepaliv"),
                f_reset(3, 8),
            ],
            preface=True,
        )
    )
    c.append(
        valid(
            "sequence_server_connection",
            "a server's side: preface, SETTINGS, RESPONSE, DATA, TRAILERS, PING ACK, GOAWAY",
            [
                f_settings(max_concurrent_streams=64),
                f_response(1, 200, headers=[("Content-Type", "text/plain")]),
                f_data(1, "hi"),
                f_trailers(1, [("X-Done", "1")]),
                f_ping(b"keepaliv", ack=True),
                f_goaway(1, 0, "shutting down"),
            ],
            preface=True,
        )
    )
    return c


# --------------------------------------------------------------------------
# Invalid cases
# --------------------------------------------------------------------------


def invalid(
    name,
    description,
    wire,
    error,
    *,
    kind=None,
    stream=None,
    eof=True,
    preface=False,
    limits=None,
    frames_before=0,
    prepend=None,
):
    """`preface`: the decoder expects the preface. `prepend` (default: same
    as `preface`): put a correct preface in front of `wire`; false for the
    preface error cases whose `wire` is the (bad) start of a connection."""
    assert error in ERROR_CLASSES, error
    if isinstance(kind, int) and kind in KIND_NAMES:
        kind = KIND_NAMES[kind]
    if prepend is None:
        prepend = preface
    if prepend:
        wire = PREFACE + wire
    return {
        "name": name,
        "description": description,
        "limits": limits or {},
        "preface": preface,
        "hex": wire.hex(),
        "eof": eof,
        "frames_before": frames_before,
        "error": error,
        "kind": kind,
        "stream": stream,
    }


def req_payload(**head) -> bytes:
    return encode_request_head(request_head_fields(**head))


def req_with_block(field: int, raw_block: bytes) -> bytes:
    """A REQUEST payload with a raw (possibly malformed) header block in
    field 7 (headers) or 13 (params)."""
    out = pb_bytes(1, b"GET") + pb_bytes(4, b"/")
    return out + pb_bytes(field, raw_block)


def resp_with_block(raw_block: bytes) -> bytes:
    return pb_varint(1, 200) + pb_bytes(3, raw_block)


def raw_entry(name: bytes, value: bytes) -> bytes:
    """A block of one raw (unchecked) entry."""
    return raw_block([(name, value)])


def many(n: int):
    return [(f"H{i}", "v") for i in range(n)]


def invalid_cases():
    c = []
    ok_req = req_payload(method="GET", path="/")
    ok_resp = encode_response_head(200)
    ping8 = b"\x00" * 8

    # ---- truncated
    c.append(
        invalid(
            "truncated_header",
            "input ends after 5 of the 9 header bytes",
            frame(DATA, 0, 1, b"abc")[:5],
            "truncated",
        )
    )
    c.append(
        invalid(
            "truncated_data_payload",
            "DATA declares 10 payload bytes, 4 arrive, then EOF",
            header(10, DATA, 0, 1) + b"abcd",
            "truncated",
        )
    )
    c.append(
        invalid(
            "truncated_preface",
            "input ends after 5 of the 8 preface bytes",
            PREFACE[:5],
            "truncated",
            preface=True,
            prepend=False,
        )
    )
    c.append(
        invalid(
            "truncated_after_complete_frame",
            "a complete PING followed by 3 bytes of the next header",
            frame(PING, 0, 0, ping8) + b"\x00\x00\x04",
            "truncated",
            frames_before=1,
        )
    )
    c.append(
        invalid(
            "truncated_ping_payload",
            "PING with 7 of its 8 payload bytes",
            header(8, PING, 0, 0) + b"\x01" * 7,
            "truncated",
        )
    )
    c.append(
        invalid(
            "truncated_request_payload",
            "REQUEST cut in the middle of its payload",
            (frame(REQUEST, 1, 1, ok_req))[:-2],
            "truncated",
        )
    )
    c.append(
        invalid(
            "truncated_header_after_preface",
            "preface, then 1 byte",
            b"\x00",
            "truncated",
            preface=True,
        )
    )

    # ---- bad_preface
    c.append(
        invalid(
            "bad_preface_http1",
            "an HTTP/1.1 request line where the preface should be",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "bad_preface",
            eof=False,
            preface=True,
            prepend=False,
        )
    )
    classic = classic_uwsgi_packet()
    c.append(
        invalid(
            "bad_preface_classic_uwsgi",
            "a classic uwsgi packet (modifier1 0, vars block) instead of the preface",
            classic,
            "bad_preface",
            eof=False,
            preface=True,
            prepend=False,
        )
    )
    c.append(
        invalid(
            "bad_preface_frame_first",
            "a SETTINGS frame with no preface in front of it",
            frame(SETTINGS, 0, 0, b""),
            "bad_preface",
            eof=False,
            preface=True,
            prepend=False,
        )
    )
    c.append(
        invalid(
            "bad_preface_last_byte",
            "preface whose final LF is a CR",
            PREFACE[:7] + b"\r",
            "bad_preface",
            eof=False,
            preface=True,
            prepend=False,
        )
    )
    c.append(
        invalid(
            "bad_preface_non_digit_version",
            "the version byte is 'A', not an ASCII digit",
            PREFACE[:3] + b"A" + PREFACE[4:],
            "bad_preface",
            eof=False,
            preface=True,
            prepend=False,
        )
    )
    c.append(
        invalid(
            "bad_preface_tls_client_hello",
            "the start of a TLS ClientHello",
            bytes.fromhex("160301020001000200"),
            "bad_preface",
            eof=False,
            preface=True,
            prepend=False,
        )
    )

    # ---- unsupported_version
    c.append(
        invalid(
            "unsupported_version_2",
            "preface announcing major version '2'",
            PREFACE[:3] + b"2" + PREFACE[4:],
            "unsupported_version",
            eof=False,
            preface=True,
            prepend=False,
        )
    )
    c.append(
        invalid(
            "unsupported_version_0",
            "preface announcing major version '0'",
            PREFACE[:3] + b"0" + PREFACE[4:],
            "unsupported_version",
            eof=False,
            preface=True,
            prepend=False,
        )
    )

    # ---- frame_too_large (declared length over the limit, no payload bytes)
    c.append(
        invalid(
            "data_over_default_max_frame_size",
            "DATA declares 65537 bytes (default limit 65536); no payload follows",
            header(65537, DATA, 0, 1),
            "frame_too_large",
            kind=DATA,
            stream=1,
            eof=False,
        )
    )
    c.append(
        invalid(
            "data_one_over_limit_1024",
            "DATA declares 1025 bytes with max_frame_size 1024; no payload follows",
            header(1025, DATA, 0, 3),
            "frame_too_large",
            kind=DATA,
            stream=3,
            eof=False,
            limits={"max_frame_size": 1024},
        )
    )
    c.append(
        invalid(
            "data_max_u24_length",
            "DATA declares 16777215 bytes; no payload follows",
            header(0xFFFFFF, DATA, 1, 5),
            "frame_too_large",
            kind=DATA,
            stream=5,
            eof=False,
        )
    )
    c.append(
        invalid(
            "extension_one_over_limit_1024",
            "extension kind 0x80 declares 1025 bytes with max_frame_size 1024",
            header(1025, 0x80, 0, 0),
            "frame_too_large",
            kind=0x80,
            stream=0,
            eof=False,
            limits={"max_frame_size": 1024},
        )
    )

    # ---- head_too_large
    c.append(
        invalid(
            "request_one_over_limit_1024",
            "REQUEST declares 1025 bytes with max_head_size 1024",
            header(1025, REQUEST, 0, 1),
            "head_too_large",
            kind=REQUEST,
            stream=1,
            eof=False,
            limits={"max_head_size": 1024},
        )
    )
    c.append(
        invalid(
            "response_over_default_max_head_size",
            "RESPONSE declares 1 MiB + 1 (default limit 1 MiB)",
            header(DEFAULT_MAX_HEAD_SIZE + 1, RESPONSE, 0, 1),
            "head_too_large",
            kind=RESPONSE,
            stream=1,
            eof=False,
        )
    )
    c.append(
        invalid(
            "trailers_one_over_limit_1024",
            "TRAILERS declares 1025 bytes with max_head_size 1024",
            header(1025, TRAILERS, 1, 7),
            "head_too_large",
            kind=TRAILERS,
            stream=7,
            eof=False,
            limits={"max_head_size": 1024},
        )
    )

    # ---- control_too_large
    c.append(
        invalid(
            "settings_over_default_max_control_size",
            "SETTINGS declares 16385 bytes (default limit 16384)",
            header(DEFAULT_MAX_CONTROL_SIZE + 1, SETTINGS, 0, 0),
            "control_too_large",
            kind=SETTINGS,
            stream=0,
            eof=False,
        )
    )
    c.append(
        invalid(
            "goaway_one_over_limit_1024",
            "GOAWAY declares 1025 bytes with max_control_size 1024",
            header(1025, GOAWAY, 0, 0),
            "control_too_large",
            kind=GOAWAY,
            stream=0,
            eof=False,
            limits={"max_control_size": 1024},
        )
    )

    # ---- unknown_kind
    c.append(
        invalid(
            "unknown_kind_0x09",
            "kind 0x09, the first undefined critical kind",
            frame(0x09, 0, 0, b""),
            "unknown_kind",
            kind=0x09,
            stream=0,
            eof=False,
        )
    )
    c.append(
        invalid(
            "unknown_kind_0x7f",
            "kind 0x7F, the last critical kind, with a payload",
            frame(0x7F, 0, 1, b"xyz"),
            "unknown_kind",
            kind=0x7F,
            stream=1,
            eof=False,
        )
    )
    c.append(
        invalid(
            "unknown_kind_header_only",
            "kind 0x42 declaring a huge length; rejected at the header",
            header(0xFFFFFF, 0x42, 0, 0),
            "unknown_kind",
            kind=0x42,
            stream=0,
            eof=False,
        )
    )

    # ---- bad_flags
    c.append(
        invalid(
            "bad_flags_upgrade_request_end_stream",
            "an upgrade offer (field 15) with END_STREAM: the client's half carries the tunnel (section 7.5)",
            frame(
                REQUEST,
                END_STREAM,
                1,
                req_payload(method="GET", path="/", upgrade="websocket"),
            ),
            "bad_flags",
            kind=REQUEST,
            stream=1,
        )
    )
    c.append(
        invalid(
            "data_bad_flag_0x02",
            "DATA with must-understand flag 0x02",
            frame(DATA, 0x02, 1, b"x"),
            "bad_flags",
            kind=DATA,
            stream=1,
        )
    )
    c.append(
        invalid(
            "data_bad_flag_0x08_with_end",
            "DATA with END_STREAM and flag 0x08",
            frame(DATA, 0x09, 1, b"x"),
            "bad_flags",
            kind=DATA,
            stream=1,
        )
    )
    c.append(
        invalid(
            "request_bad_flag_0x04",
            "REQUEST with flag 0x04",
            frame(REQUEST, 0x04, 1, ok_req),
            "bad_flags",
            kind=REQUEST,
            stream=1,
        )
    )
    c.append(
        invalid(
            "response_bad_flag_0x02",
            "RESPONSE with flag 0x02",
            frame(RESPONSE, 0x02, 1, ok_resp),
            "bad_flags",
            kind=RESPONSE,
            stream=1,
        )
    )
    c.append(
        invalid(
            "trailers_bad_flag_0x02",
            "TRAILERS with END_STREAM and flag 0x02",
            frame(TRAILERS, 0x03, 1, b""),
            "bad_flags",
            kind=TRAILERS,
            stream=1,
        )
    )
    c.append(
        invalid(
            "trailers_without_end_stream",
            "TRAILERS without the mandatory END_STREAM",
            frame(TRAILERS, 0x00, 1, block([("a", "b")])),
            "bad_flags",
            kind=TRAILERS,
            stream=1,
        )
    )
    c.append(
        invalid(
            "trailers_only_extension_flags",
            "TRAILERS with only extension flag bits (0xF0): still no END_STREAM",
            frame(TRAILERS, 0xF0, 1, b""),
            "bad_flags",
            kind=TRAILERS,
            stream=1,
        )
    )
    c.append(
        invalid(
            "response_interim_with_end_stream",
            "interim 103 RESPONSE with END_STREAM",
            frame(RESPONSE, END_STREAM, 1, encode_response_head(103)),
            "bad_flags",
            kind=RESPONSE,
            stream=1,
        )
    )
    c.append(
        invalid(
            "response_100_with_end_stream",
            "interim 100 RESPONSE with END_STREAM",
            frame(
                RESPONSE, END_STREAM, 3, encode_response_head(100, headers=[("a", "b")])
            ),
            "bad_flags",
            kind=RESPONSE,
            stream=3,
        )
    )
    c.append(
        invalid(
            "reset_flag_0x01",
            "RESET with flag 0x01 (RESET defines no flags)",
            frame(RESET, 0x01, 1, b"\x00\x00\x00\x08"),
            "bad_flags",
            kind=RESET,
            stream=1,
        )
    )
    c.append(
        invalid(
            "settings_flag_0x01",
            "SETTINGS with flag 0x01 (no ACK in uwire)",
            frame(SETTINGS, 0x01, 0, b""),
            "bad_flags",
            kind=SETTINGS,
            stream=0,
        )
    )
    c.append(
        invalid(
            "ping_flag_0x02",
            "PING with flag 0x02",
            frame(PING, 0x02, 0, ping8),
            "bad_flags",
            kind=PING,
            stream=0,
        )
    )
    c.append(
        invalid(
            "goaway_flag_0x04",
            "GOAWAY with flag 0x04",
            frame(GOAWAY, 0x04, 0, encode_goaway(1, 0)),
            "bad_flags",
            kind=GOAWAY,
            stream=0,
        )
    )
    c.append(
        invalid(
            "window_update_flag_0x01",
            "WINDOW_UPDATE with flag 0x01",
            frame(WINDOW_UPDATE, 0x01, 0, (1).to_bytes(4, "big")),
            "bad_flags",
            kind=WINDOW_UPDATE,
            stream=0,
        )
    )

    # ---- bad_stream_id
    c.append(
        invalid(
            "data_stream_zero",
            "DATA on stream 0",
            frame(DATA, 0, 0, b"x"),
            "bad_stream_id",
            kind=DATA,
            stream=0,
        )
    )
    c.append(
        invalid(
            "request_stream_zero",
            "REQUEST on stream 0",
            frame(REQUEST, 1, 0, ok_req),
            "bad_stream_id",
            kind=REQUEST,
            stream=0,
        )
    )
    c.append(
        invalid(
            "request_even_stream",
            "REQUEST on even stream 2",
            frame(REQUEST, 1, 2, ok_req),
            "bad_stream_id",
            kind=REQUEST,
            stream=2,
        )
    )
    c.append(
        invalid(
            "response_stream_zero",
            "RESPONSE on stream 0",
            frame(RESPONSE, 0, 0, ok_resp),
            "bad_stream_id",
            kind=RESPONSE,
            stream=0,
        )
    )
    c.append(
        invalid(
            "trailers_stream_zero",
            "TRAILERS on stream 0",
            frame(TRAILERS, 1, 0, b""),
            "bad_stream_id",
            kind=TRAILERS,
            stream=0,
        )
    )
    c.append(
        invalid(
            "reset_stream_zero",
            "RESET on stream 0",
            frame(RESET, 0, 0, b"\x00\x00\x00\x08"),
            "bad_stream_id",
            kind=RESET,
            stream=0,
        )
    )
    c.append(
        invalid(
            "settings_nonzero_stream",
            "SETTINGS on stream 1",
            frame(SETTINGS, 0, 1, b""),
            "bad_stream_id",
            kind=SETTINGS,
            stream=1,
        )
    )
    c.append(
        invalid(
            "ping_nonzero_stream",
            "PING on stream 1",
            frame(PING, 0, 1, ping8),
            "bad_stream_id",
            kind=PING,
            stream=1,
        )
    )
    c.append(
        invalid(
            "goaway_nonzero_stream",
            "GOAWAY on stream 3",
            frame(GOAWAY, 0, 3, b""),
            "bad_stream_id",
            kind=GOAWAY,
            stream=3,
        )
    )

    # ---- reserved_bit
    c.append(
        invalid(
            "data_stream_reserved_bit",
            "DATA whose stream id field is 0x80000001",
            frame(DATA, 0, 0x80000001, b"x"),
            "reserved_bit",
            kind=DATA,
            stream=1,
            eof=False,
        )
    )
    c.append(
        invalid(
            "settings_stream_reserved_bit_only",
            "SETTINGS whose stream id field is 0x80000000 (stream 0 plus the reserved bit)",
            frame(SETTINGS, 0, 0x80000000, b""),
            "reserved_bit",
            kind=SETTINGS,
            stream=0,
            eof=False,
        )
    )
    c.append(
        invalid(
            "window_update_increment_reserved_bit",
            "WINDOW_UPDATE increment 0x80000001",
            frame(WINDOW_UPDATE, 0, 0, (0x80000001).to_bytes(4, "big")),
            "reserved_bit",
            kind=WINDOW_UPDATE,
            stream=0,
        )
    )
    c.append(
        invalid(
            "goaway_last_stream_high_bit",
            "GOAWAY last_stream_id 0x80000000 (exceeds 31 bits)",
            frame(GOAWAY, 0, 0, pb_varint(1, 0x80000000)),
            "reserved_bit",
            kind=GOAWAY,
            stream=0,
        )
    )

    # ---- bad_length (checked at the header, before buffering)
    c.append(
        invalid(
            "reset_length_3",
            "RESET with a 3-byte payload",
            frame(RESET, 0, 1, b"\x00\x00\x08"),
            "bad_length",
            kind=RESET,
            stream=1,
            eof=False,
        )
    )
    c.append(
        invalid(
            "reset_length_5",
            "RESET with a 5-byte payload",
            frame(RESET, 0, 1, b"\x00\x00\x00\x08\x00"),
            "bad_length",
            kind=RESET,
            stream=1,
            eof=False,
        )
    )
    c.append(
        invalid(
            "ping_length_7",
            "PING with a 7-byte payload",
            frame(PING, 0, 0, b"\x00" * 7),
            "bad_length",
            kind=PING,
            stream=0,
            eof=False,
        )
    )
    c.append(
        invalid(
            "ping_length_max_no_payload",
            "PING declaring 16777215 bytes; rejected before any payload",
            header(0xFFFFFF, PING, 0, 0),
            "bad_length",
            kind=PING,
            stream=0,
            eof=False,
        )
    )
    c.append(
        invalid(
            "window_update_length_0",
            "WINDOW_UPDATE with an empty payload",
            frame(WINDOW_UPDATE, 0, 0, b""),
            "bad_length",
            kind=WINDOW_UPDATE,
            stream=0,
            eof=False,
        )
    )
    c.append(
        invalid(
            "window_update_length_8",
            "WINDOW_UPDATE with an 8-byte payload",
            frame(WINDOW_UPDATE, 0, 1, b"\x00\x00\x00\x01" * 2),
            "bad_length",
            kind=WINDOW_UPDATE,
            stream=1,
            eof=False,
        )
    )

    # ---- invalid_protobuf
    c.append(
        invalid(
            "request_truncated_varint",
            "RequestHead ending inside a varint (version field)",
            frame(REQUEST, 1, 1, pb_bytes(1, b"GET") + pb_bytes(4, b"/") + b"\x30\xff"),
            "invalid_protobuf",
            kind=REQUEST,
            stream=1,
        )
    )
    c.append(
        invalid(
            "request_length_past_end",
            "RequestHead method field declares 16 bytes, 3 follow",
            frame(REQUEST, 1, 1, b"\x0a\x10GET"),
            "invalid_protobuf",
            kind=REQUEST,
            stream=1,
        )
    )
    c.append(
        invalid(
            "request_wrong_wire_type",
            "RequestHead method (bytes) sent with wire type 0 (varint)",
            frame(REQUEST, 1, 1, pb_varint(1, 5) + pb_bytes(4, b"/")),
            "invalid_protobuf",
            kind=REQUEST,
            stream=1,
        )
    )
    c.append(
        invalid(
            "request_wire_type_7",
            "RequestHead key with the undefined wire type 7",
            frame(REQUEST, 1, 1, ok_req + b"\x0f\x00"),
            "invalid_protobuf",
            kind=REQUEST,
            stream=1,
        )
    )
    c.append(
        invalid(
            "response_field_number_zero",
            "ResponseHead with a key for field number 0",
            frame(RESPONSE, 0, 1, ok_resp + b"\x00\x00"),
            "invalid_protobuf",
            kind=RESPONSE,
            stream=1,
        )
    )
    c.append(
        invalid(
            "response_varint_too_long",
            "ResponseHead status varint of 11 bytes",
            frame(RESPONSE, 0, 1, b"\x08" + b"\xff" * 10 + b"\x01"),
            "invalid_protobuf",
            kind=RESPONSE,
            stream=1,
        )
    )
    c.append(
        invalid(
            "settings_truncated_varint",
            "Settings ending inside a varint",
            frame(SETTINGS, 0, 0, b"\x08\x80"),
            "invalid_protobuf",
            kind=SETTINGS,
            stream=0,
        )
    )
    c.append(
        invalid(
            "settings_wrong_wire_type",
            "Settings max_concurrent_streams sent length-delimited",
            frame(SETTINGS, 0, 0, pb_bytes(1, b"\x05")),
            "invalid_protobuf",
            kind=SETTINGS,
            stream=0,
        )
    )
    c.append(
        invalid(
            "goaway_length_past_end",
            "GoAway debug declares 100 bytes, 3 follow",
            frame(GOAWAY, 0, 0, b"\x1a\x64abc"),
            "invalid_protobuf",
            kind=GOAWAY,
            stream=0,
        )
    )
    c.append(
        invalid(
            "goaway_unknown_field_past_end",
            "GoAway unknown length-delimited field 9 running past the end",
            frame(GOAWAY, 0, 0, b"\x4a\x05ab"),
            "invalid_protobuf",
            kind=GOAWAY,
            stream=0,
        )
    )

    # ---- invalid_header_block
    def hb_case(name, desc, raw, where="headers"):
        if where == "headers":
            payload, kind = req_with_block(7, raw), REQUEST
            fl = 1
        elif where == "params":
            payload, kind = req_with_block(13, raw), REQUEST
            fl = 1
        elif where == "response":
            payload, kind = resp_with_block(raw), RESPONSE
            fl = 0
        else:
            payload, kind = raw, TRAILERS
            fl = 1
        c.append(
            invalid(
                name,
                desc,
                frame(kind, fl, 1, payload),
                "invalid_header_block",
                kind=kind,
                stream=1,
            )
        )

    good = (b"Host", b"a")
    hb_case(
        "header_empty_name",
        "request header entry with an empty name",
        raw_block([good, (b"", b"x")]),
    )
    hb_case(
        "header_name_with_space",
        "request header name 'Bad Name'",
        raw_entry(b"Bad Name", b"x"),
    )
    hb_case(
        "header_name_with_colon",
        "request header name ':path' (pseudo-header syntax is not a token)",
        raw_entry(b":path", b"/"),
    )
    hb_case(
        "header_name_non_ascii",
        "request header name with byte 0xE9",
        raw_entry(b"caf\xe9", b"x"),
    )
    hb_case(
        "header_value_with_cr",
        "request header value containing CR",
        raw_entry(b"X-A", b"a\rb"),
    )
    hb_case(
        "header_value_with_lf",
        "request header value containing LF",
        raw_entry(b"X-A", b"a\nInjected: 1"),
    )
    hb_case(
        "header_value_with_nul",
        "request header value containing NUL",
        raw_entry(b"X-A", b"a\x00b"),
    )
    hb_case(
        "header_value_nul_at_end_of_40_bytes",
        "40-byte value whose last byte is NUL",
        raw_entry(b"X-A", b"v" * 39 + b"\x00"),
    )
    hb_case(
        "header_value_lf_in_second_word",
        "16-byte value with LF at offset 9",
        raw_entry(b"X-A", b"v" * 9 + b"\n" + b"v" * 6),
    )
    hb_case(
        "header_value_cr_in_300_bytes",
        "300-byte value with CR at offset 250",
        raw_entry(b"X-A", b"v" * 250 + b"\r" + b"v" * 49),
        where="trailers",
    )
    hb_case(
        "header_name_8_bytes_with_space",
        "8-byte name with a space as its last byte",
        raw_entry(b"X-Heade ", b"v"),
        where="response",
    )
    hb_case(
        "header_lengths_past_data",
        "the table's lengths add up to 1 byte more than the data",
        b"Hosta" + b"\x00\x04\x00\x00\x00\x02" + b"\x00\x00\x00\x01",
    )
    hb_case(
        "header_lengths_short_of_data",
        "one stray data byte the table's lengths do not cover",
        b"Hostax" + b"\x00\x04\x00\x00\x00\x01" + b"\x00\x00\x00\x01",
    )
    hb_case(
        "header_block_shorter_than_count",
        "a 3-byte block: no room for the 4-byte count",
        b"\x00\x00\x01",
    )
    hb_case(
        "header_count_table_past_start",
        "count 2 in a 10-byte block (the table alone needs 12)",
        b"\x00\x01\x00\x00\x00\x00" + b"\x00\x00\x00\x02",
    )
    hb_case(
        "header_zero_count",
        "a block of only the count 0 (no entries is the empty, 0-byte block)",
        b"\x00\x00\x00\x00",
    )
    hb_case(
        "header_data_without_entries",
        "data bytes before a count of 0",
        b"Host" + b"\x00\x00\x00\x00",
    )
    hb_case(
        "params_name_invalid",
        "params block with a name containing '='",
        raw_entry(b"A=B", b"c"),
        where="params",
    )
    hb_case(
        "response_header_value_with_lf",
        "response header value containing LF",
        raw_entry(b"Location", b"/a\n"),
        where="response",
    )
    hb_case(
        "trailers_value_with_nul",
        "trailer value containing NUL",
        raw_entry(b"grpc-status", b"0\x00"),
        where="trailers",
    )
    hb_case(
        "trailers_length_past_end",
        "trailer block whose value length runs past its data",
        b"ab" + b"\x00\x01\x00\x00\x00\x05" + b"\x00\x00\x00\x01",
        where="trailers",
    )

    # ---- too_many_headers
    lim4 = {"max_header_count": 4}
    c.append(
        invalid(
            "request_headers_over_count",
            "5 request headers with max_header_count 4",
            frame(REQUEST, 1, 1, req_payload(method="GET", path="/", headers=many(5))),
            "too_many_headers",
            kind=REQUEST,
            stream=1,
            limits=lim4,
        )
    )
    c.append(
        invalid(
            "request_header_count_checked_before_fields",
            "count 5 with max_header_count 4 and a bad first name: the count "
            "is checked before the table and the fields",
            frame(
                REQUEST,
                1,
                1,
                req_with_block(7, raw_block([(b"a b", b"v")] + [(b"h", b"v")] * 4)),
            ),
            "too_many_headers",
            kind=REQUEST,
            stream=1,
            limits=lim4,
        )
    )
    c.append(
        invalid(
            "request_params_over_count",
            "5 params with max_header_count 4 (headers and params counted separately)",
            frame(
                REQUEST,
                1,
                1,
                req_payload(method="GET", path="/", headers=many(4), params=many(5)),
            ),
            "too_many_headers",
            kind=REQUEST,
            stream=1,
            limits=lim4,
        )
    )
    c.append(
        invalid(
            "response_headers_over_count",
            "5 response headers with max_header_count 4",
            frame(RESPONSE, 0, 1, encode_response_head(200, headers=many(5))),
            "too_many_headers",
            kind=RESPONSE,
            stream=1,
            limits=lim4,
        )
    )
    c.append(
        invalid(
            "trailers_over_count",
            "5 trailer fields with max_header_count 4",
            frame(TRAILERS, 1, 1, block(many(5))),
            "too_many_headers",
            kind=TRAILERS,
            stream=1,
            limits=lim4,
        )
    )
    c.append(
        invalid(
            "request_headers_over_default_count",
            "257 request headers with the default max_header_count 256",
            frame(
                REQUEST, 1, 1, req_payload(method="GET", path="/", headers=many(257))
            ),
            "too_many_headers",
            kind=REQUEST,
            stream=1,
        )
    )

    # ---- invalid_head
    def head_case(name, desc, payload, kind=REQUEST, flags=1):
        c.append(
            invalid(
                name,
                desc,
                frame(kind, flags, 1, payload),
                "invalid_head",
                kind=kind,
                stream=1,
            )
        )

    head_case("request_empty_method", "RequestHead without a method", pb_bytes(4, b"/"))
    head_case(
        "request_method_with_space",
        "method 'GE T' is not a token",
        req_payload(method="GE T", path="/"),
    )
    head_case(
        "request_method_with_paren",
        "method 'GET()' is not a token",
        req_payload(method="GET()", path="/"),
    )
    head_case("request_empty_path", "RequestHead without a path", pb_bytes(1, b"GET"))
    head_case(
        "request_client_port_65536",
        "client_port 65536",
        req_payload(method="GET", path="/", client_port=65536),
    )
    head_case(
        "request_server_port_70000",
        "server_port 70000",
        req_payload(method="GET", path="/", server_port=70000),
    )
    head_case(
        "response_status_99",
        "status 99",
        encode_response_head(99),
        kind=RESPONSE,
        flags=0,
    )
    head_case(
        "response_status_1000",
        "status 1000",
        encode_response_head(1000),
        kind=RESPONSE,
        flags=0,
    )
    head_case(
        "response_status_absent",
        "ResponseHead without a status (0)",
        encode_response_head(0, reason="OK"),
        kind=RESPONSE,
        flags=0,
    )
    head_case(
        "response_reason_with_cr",
        "reason phrase containing CR",
        encode_response_head(200, reason="OK\r"),
        kind=RESPONSE,
        flags=0,
    )
    head_case(
        "response_reason_with_nul",
        "reason phrase containing NUL",
        encode_response_head(200, reason="O\x00K"),
        kind=RESPONSE,
        flags=0,
    )

    # ---- zero_window_increment
    c.append(
        invalid(
            "window_update_zero_connection",
            "WINDOW_UPDATE of 0 on the connection",
            frame(WINDOW_UPDATE, 0, 0, bytes(4)),
            "zero_window_increment",
            kind=WINDOW_UPDATE,
            stream=0,
        )
    )
    c.append(
        invalid(
            "window_update_zero_stream",
            "WINDOW_UPDATE of 0 on stream 3",
            frame(WINDOW_UPDATE, 0, 3, bytes(4)),
            "zero_window_increment",
            kind=WINDOW_UPDATE,
            stream=3,
        )
    )

    # ---- invalid_settings
    def set_case(name, desc, **values):
        c.append(
            invalid(
                name,
                desc,
                frame(SETTINGS, 0, 0, encode_settings(**values)),
                "invalid_settings",
                kind=SETTINGS,
                stream=0,
            )
        )

    set_case(
        "settings_stream_window_2_31",
        "initial_stream_window 2^31",
        initial_stream_window=1 << 31,
    )
    set_case(
        "settings_connection_window_u32_max",
        "initial_connection_window 2^32-1",
        initial_connection_window=0xFFFFFFFF,
    )
    set_case("settings_max_frame_size_1023", "max_frame_size 1023", max_frame_size=1023)
    set_case(
        "settings_max_frame_size_16777216",
        "max_frame_size 16777216",
        max_frame_size=1 << 24,
    )
    set_case("settings_max_head_size_0", "max_head_size 0 (present)", max_head_size=0)
    set_case("settings_max_header_count_0", "max_header_count 0", max_header_count=0)

    # ---- decoding order (docs/PROTOCOL.md section 4.6): two faults each
    def order(name, desc, wire, error, kind, stream, eof=True, limits=None):
        c.append(
            invalid(
                "order_" + name,
                "two faults, decoding order: " + desc,
                wire,
                error,
                kind=kind,
                stream=stream,
                eof=eof,
                limits=limits,
            )
        )

    order(
        "reserved_bit_before_unknown_kind",
        "reserved stream bit (step 1) before unknown kind 0x0A (step 2)",
        frame(0x0A, 0, 0x80000003, b""),
        "reserved_bit",
        0x0A,
        3,
        eof=False,
    )
    order(
        "length_before_stream",
        "DATA on stream 0 declaring 65537 bytes: frame_too_large (step 2) before bad_stream_id (step 4)",
        header(65537, DATA, 0, 0),
        "frame_too_large",
        DATA,
        0,
        eof=False,
    )
    order(
        "bad_length_before_stream",
        "RESET on stream 0 with 3 bytes: bad_length (step 2) before bad_stream_id (step 4)",
        frame(RESET, 0, 0, b"\x00\x00\x08"),
        "bad_length",
        RESET,
        0,
        eof=False,
    )
    order(
        "stream_before_flags",
        "DATA on stream 0 with flag 0x02: bad_stream_id (step 4) before bad_flags (step 5)",
        frame(DATA, 0x02, 0, b"x"),
        "bad_stream_id",
        DATA,
        0,
    )
    order(
        "even_request_before_flags",
        "REQUEST on stream 2 with flag 0x04",
        frame(REQUEST, 0x04, 2, ok_req),
        "bad_stream_id",
        REQUEST,
        2,
    )
    order(
        "trailers_stream_before_end_stream",
        "TRAILERS on stream 0 without END_STREAM",
        frame(TRAILERS, 0, 0, b""),
        "bad_stream_id",
        TRAILERS,
        0,
    )
    order(
        "settings_stream_before_flags",
        "SETTINGS on stream 1 with flag 0x01",
        frame(SETTINGS, 0x01, 1, b""),
        "bad_stream_id",
        SETTINGS,
        1,
    )
    order(
        "flags_before_protobuf",
        "SETTINGS with flag 0x01 and a truncated varint: bad_flags (step 5) before invalid_protobuf (step 6)",
        frame(SETTINGS, 0x01, 0, b"\x08\x80"),
        "bad_flags",
        SETTINGS,
        0,
    )
    order(
        "flags_before_head",
        "RESPONSE with flag 0x02 and status 99",
        frame(RESPONSE, 0x02, 1, encode_response_head(99)),
        "bad_flags",
        RESPONSE,
        1,
    )
    order(
        "flags_before_zero_increment",
        "WINDOW_UPDATE with flag 0x01 and increment 0",
        frame(WINDOW_UPDATE, 0x01, 0, bytes(4)),
        "bad_flags",
        WINDOW_UPDATE,
        0,
    )
    order(
        "interim_end_stream_after_payload",
        "interim 100 RESPONSE with END_STREAM and a bad header block: the interim check runs after the payload decodes",
        frame(
            RESPONSE,
            END_STREAM,
            1,
            encode_response_head(100) + pb_bytes(3, raw_entry(b"a b", b"x")),
        ),
        "invalid_header_block",
        RESPONSE,
        1,
    )
    c.append(
        invalid(
            "unsupported_version_rest_differs",
            "preface with version '3' and different bytes 4-7: the version byte decides, bytes 4-7 need not be checked",
            b"\x9aUW3XXXX",
            "unsupported_version",
            eof=False,
            preface=True,
            prepend=False,
        )
    )
    return c


def classic_uwsgi_packet() -> bytes:
    """A classic uwsgi request: 4-byte header (modifier1, datasize LE,
    modifier2) followed by key/value pairs with u16 LE lengths."""
    body = bytearray()
    for k, v in [
        (b"REQUEST_METHOD", b"GET"),
        (b"PATH_INFO", b"/"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
    ]:
        body += len(k).to_bytes(2, "little") + k + len(v).to_bytes(2, "little") + v
    return bytes([0]) + len(body).to_bytes(2, "little") + bytes([0]) + bytes(body)


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def render(cases) -> str:
    names = [c["name"] for c in cases]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, f"duplicate case names: {sorted(dup)}"
    doc = {"version": FORMAT_VERSION, "cases": cases}
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=True) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--check",
        action="store_true",
        help="verify the files are up to date; write nothing",
    )
    args = ap.parse_args()

    v = valid_cases()
    inv = invalid_cases()
    outputs = {
        OUT_DIR / "frames_valid.json": render(v),
        OUT_DIR / "frames_invalid.json": render(inv),
    }
    stale = []
    for path, text in outputs.items():
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="\n")
    if args.check:
        if stale:
            for p in stale:
                print(
                    f"stale: {p.relative_to(ROOT)} (run scripts/gen_vectors.py)",
                    file=sys.stderr,
                )
            return 1
        print("test vectors are up to date")
        return 0

    counts = {}
    for case in inv:
        counts[case["error"]] = counts.get(case["error"], 0) + 1
    print(f"wrote {len(v)} valid and {len(inv)} invalid cases")
    for cls in ERROR_CLASSES:
        print(f"  {cls}: {counts.get(cls, 0)}")
    missing = [cls for cls in ERROR_CLASSES if cls not in counts]
    if missing:
        print(f"missing error classes: {missing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
