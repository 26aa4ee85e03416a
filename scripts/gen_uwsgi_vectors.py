#!/usr/bin/env python3
"""Writes the shared classic-uwsgi vectors (tests/vectors/uwsgi_*.json).

The wire bytes come from this script's own packet writer (uwsgi protocol:
modifier1:u8, datasize:u16le, modifier2:u8, then key_size:u16le key
val_size:u16le val entries). Every expected meaning (decoded vars, request
heads, response heads, encoded vars, error classes) is written by hand
below; nothing is computed by an implementation, and no code is shared
with the Rust crate. Python 3.11, standard library only. Format:
tests/vectors/UWSGI.md.

    python3 scripts/gen_uwsgi_vectors.py          # (re)write the files
    python3 scripts/gen_uwsgi_vectors.py --check  # exit 1 if they are stale
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent / "tests" / "vectors"
FORMAT_VERSION = 1

# ---------------------------------------------------------------------------
# Bytes and the uwsgi wire format
# ---------------------------------------------------------------------------


def as_bytes(v) -> bytes:
    """A str is its UTF-8 encoding; bytes are themselves."""
    return v.encode("utf-8") if isinstance(v, str) else bytes(v)


def jbytes(v):
    """A bytes value in JSON: a string when valid UTF-8, else {"hex": ...}."""
    b = as_bytes(v)
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": b.hex()}


def jpairs(pairs) -> list:
    return [[jbytes(k), jbytes(v)] for k, v in pairs]


def pkt_header(modifier1: int, datasize: int, modifier2: int) -> bytes:
    assert 0 <= datasize <= 0xFFFF
    return bytes([modifier1]) + datasize.to_bytes(2, "little") + bytes([modifier2])


def vars_block(pairs) -> bytes:
    out = b""
    for k, v in pairs:
        k, v = as_bytes(k), as_bytes(v)
        out += len(k).to_bytes(2, "little") + k + len(v).to_bytes(2, "little") + v
    return out


def packet(pairs, modifier1=0, modifier2=0, body=b"") -> bytes:
    blk = vars_block(pairs)
    return pkt_header(modifier1, len(blk), modifier2) + blk + as_bytes(body)


# ---------------------------------------------------------------------------
# Request heads (the REQUEST head object of tests/vectors/README.md)
# ---------------------------------------------------------------------------

EMPTY_HEAD = {
    "method": "",
    "scheme": "http",
    "authority": "",
    "path": "/",
    "query": None,
    "version": "UNSPECIFIED",
    "headers": [],
    "client_addr": "",
    "client_port": 0,
    "server_name": "",
    "server_port": 0,
    "tls": False,
    "params": [],
    "body_length": None,
}


def jhead(**fields) -> dict:
    h = dict(EMPTY_HEAD)
    for k, v in fields.items():
        assert k in h, k
        h[k] = v
    out = {}
    for k, v in h.items():
        if k in ("headers", "params"):
            out[k] = jpairs(v)
        elif k in (
            "method",
            "scheme",
            "authority",
            "path",
            "client_addr",
            "server_name",
        ):
            out[k] = jbytes(v)
        elif k == "query":
            out[k] = None if v is None else jbytes(v)
        else:
            out[k] = v
    return out


# What nginx sends for a browser GET with the stock uwsgi_params file.
NGINX_GET = [
    ("QUERY_STRING", "page=2"),
    ("REQUEST_METHOD", "GET"),
    ("CONTENT_TYPE", ""),
    ("CONTENT_LENGTH", ""),
    ("REQUEST_URI", "/blog/posts?page=2"),
    ("PATH_INFO", "/blog/posts"),
    ("DOCUMENT_ROOT", "/usr/share/nginx/html"),
    ("SERVER_PROTOCOL", "HTTP/1.1"),
    ("REQUEST_SCHEME", "http"),
    ("REMOTE_ADDR", "192.0.2.10"),
    ("REMOTE_PORT", "54321"),
    ("SERVER_PORT", "80"),
    ("SERVER_NAME", "example.com"),
    ("HTTP_HOST", "example.com"),
    (
        "HTTP_USER_AGENT",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    ("HTTP_ACCEPT", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("HTTP_ACCEPT_LANGUAGE", "en-US,en;q=0.5"),
    ("HTTP_ACCEPT_ENCODING", "gzip, deflate, br, zstd"),
    ("HTTP_CONNECTION", "keep-alive"),
    ("HTTP_COOKIE", "session=abc123"),
    ("HTTP_UPGRADE_INSECURE_REQUESTS", "1"),
]

NGINX_GET_HEAD = {
    "method": "GET",
    "scheme": "http",
    "authority": "example.com",
    "path": "/blog/posts",
    "query": "page=2",
    "version": "HTTP_1_1",
    "headers": [
        ("Host", "example.com"),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("Accept-Language", "en-US,en;q=0.5"),
        ("Accept-Encoding", "gzip, deflate, br, zstd"),
        ("Connection", "keep-alive"),
        ("Cookie", "session=abc123"),
        ("Upgrade-Insecure-Requests", "1"),
    ],
    "client_addr": "192.0.2.10",
    "client_port": 54321,
    "server_name": "example.com",
    "server_port": 80,
    "params": [("DOCUMENT_ROOT", "/usr/share/nginx/html")],
}

# ---------------------------------------------------------------------------
# uwsgi_valid.json
# ---------------------------------------------------------------------------

VALID = []


def valid(
    name,
    description,
    pairs,
    *,
    head=None,
    head_error=None,
    body=b"",
    limits=None,
    modifier2=0,
    body_length=0,
    raw=None,
):
    assert (head is None) != (head_error is None)
    wire = raw if raw is not None else packet(pairs, modifier2=modifier2, body=body)
    case = {
        "name": name,
        "description": description,
        "limits": limits or {},
        "hex": wire.hex(),
        "header": {
            "modifier1": 0,
            "datasize": len(vars_block(pairs)),
            "modifier2": modifier2,
        },
        "vars": jpairs(pairs),
        "body_length": body_length,
        "body_hex": as_bytes(body).hex(),
    }
    if head is not None:
        case["head"] = head
    else:
        case["head_error"] = head_error
    VALID.append(case)


valid(
    "nginx_get",
    "a browser GET as nginx sends it with the stock uwsgi_params: empty CONTENT_TYPE/CONTENT_LENGTH, DOCUMENT_ROOT a param, headers rebuilt from HTTP_*",
    NGINX_GET,
    head=jhead(**NGINX_GET_HEAD),
)

POST_VARS = [
    ("QUERY_STRING", ""),
    ("REQUEST_METHOD", "POST"),
    ("CONTENT_TYPE", "application/x-www-form-urlencoded"),
    ("CONTENT_LENGTH", "11"),
    ("REQUEST_URI", "/login"),
    ("PATH_INFO", "/login"),
    ("DOCUMENT_ROOT", "/srv/www"),
    ("SERVER_PROTOCOL", "HTTP/1.1"),
    ("REQUEST_SCHEME", "https"),
    ("HTTPS", "on"),
    ("REMOTE_ADDR", "198.51.100.4"),
    ("REMOTE_PORT", "61000"),
    ("SERVER_PORT", "443"),
    ("SERVER_NAME", "example.com"),
    ("HTTP_HOST", "example.com"),
    ("HTTP_CONTENT_TYPE", "application/x-www-form-urlencoded"),
    ("HTTP_CONTENT_LENGTH", "11"),
    ("HTTP_ORIGIN", "https://example.com"),
]
valid(
    "nginx_post_with_body",
    "an HTTPS form POST: the 11-byte body follows the block; HTTP_CONTENT_TYPE/HTTP_CONTENT_LENGTH (nginx sends both) are dropped, CONTENT_TYPE becomes the leading Content-Type header",
    POST_VARS,
    body=b"user=a&pw=b",
    body_length=11,
    head=jhead(
        method="POST",
        scheme="https",
        authority="example.com",
        path="/login",
        version="HTTP_1_1",
        headers=[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Host", "example.com"),
            ("Origin", "https://example.com"),
        ],
        client_addr="198.51.100.4",
        client_port=61000,
        server_name="example.com",
        server_port=443,
        tls=True,
        params=[("DOCUMENT_ROOT", "/srv/www")],
        body_length=11,
    ),
)

valid(
    "empty_vars_block",
    "datasize 0: a well-formed packet with no vars; it decodes, but without REQUEST_METHOD it is no request",
    [],
    head_error="invalid_method",
)

valid(
    "minimal_request",
    "only REQUEST_METHOD: path '/', no query, scheme http, everything else empty",
    [("REQUEST_METHOD", "GET")],
    head=jhead(method="GET"),
)

AT64 = [("REQUEST_METHOD", "GET"), ("X_PAD", "p" * (64 - 21 - 9))]
assert len(vars_block(AT64)) == 64
valid(
    "block_exactly_at_limit",
    "a 64-byte block with max_block_size 64",
    AT64,
    limits={"max_block_size": 64},
    head=jhead(method="GET", params=[("X_PAD", "p" * 34)]),
)

BIG = [("REQUEST_METHOD", "GET"), ("X_PAD", "x" * 65505)]
assert len(vars_block(BIG)) == 65535
valid(
    "block_at_protocol_max",
    "a 65535-byte block (datasize ff ff), the most a u16 can describe, with the default limit",
    BIG,
    head=jhead(method="GET", params=[("X_PAD", "x" * 65505)]),
)

valid(
    "modifier2_ignored",
    "modifier1 0 with modifier2 7: accepted, modifier2 ignored",
    [("REQUEST_METHOD", "HEAD"), ("PATH_INFO", "/x")],
    modifier2=7,
    head=jhead(method="HEAD", path="/x"),
)

valid(
    "body_follows_with_leftover",
    "CONTENT_LENGTH 5 with exactly 5 body bytes after the block: the decoder leaves them in the buffer",
    [("REQUEST_METHOD", "PUT"), ("CONTENT_LENGTH", "5"), ("PATH_INFO", "/f")],
    body=b"\x00\x01\x02\xfe\xff",
    body_length=5,
    head=jhead(method="PUT", path="/f", body_length=5),
)

valid(
    "content_length_leading_zeros",
    "CONTENT_LENGTH '007' is a plain decimal: 7",
    [("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "007")],
    body=b"1234567",
    body_length=7,
    head=jhead(method="POST", body_length=7),
)

valid(
    "content_length_zero",
    "CONTENT_LENGTH '0' is a known empty body (body_length 0, not null)",
    [("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "0")],
    head=jhead(method="POST", body_length=0),
)

valid(
    "body_exactly_at_limit",
    "CONTENT_LENGTH equal to max_body_size",
    [("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "5")],
    limits={"max_body_size": 5},
    body=b"hello",
    body_length=5,
    head=jhead(method="POST", body_length=5),
)

valid(
    "vars_exactly_at_limit",
    "3 vars with max_vars 3",
    [("REQUEST_METHOD", "GET"), ("A", "1"), ("B", "2")],
    limits={"max_vars": 3},
    head=jhead(method="GET", params=[("A", "1"), ("B", "2")]),
)

valid(
    "binary_param_value",
    "values are binary-safe: bytes 0x80..0xFF and tabs pass through a param",
    [("REQUEST_METHOD", "GET"), ("X_BIN", b"\xff\xfe\t\x80 end")],
    head=jhead(method="GET", params=[("X_BIN", b"\xff\xfe\t\x80 end")]),
)

valid(
    "rewrite_path_info_wins",
    "nginx rewrote the URI: PATH_INFO and QUERY_STRING win, the original REQUEST_URI is kept as a param",
    [
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/old/page?id=1"),
        ("PATH_INFO", "/new/page"),
        ("QUERY_STRING", "id=1&v=2"),
    ],
    head=jhead(
        method="GET",
        path="/new/page",
        query="id=1&v=2",
        params=[("REQUEST_URI", "/old/page?id=1")],
    ),
)

valid(
    "dot_segments_normalised_by_nginx",
    "REQUEST_URI with dot segments and '//': nginx's normalised PATH_INFO is the path",
    [
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/static/../admin//users"),
        ("PATH_INFO", "/admin/users"),
        ("QUERY_STRING", ""),
    ],
    head=jhead(
        method="GET",
        path="/admin/users",
        params=[("REQUEST_URI", "/static/../admin//users")],
    ),
)

valid(
    "encoded_slash_kept_raw",
    "REQUEST_URI decodes to PATH_INFO: the raw path (with %2F) is kept",
    [
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/files/a%2Fb%20c"),
        ("PATH_INFO", "/files/a/b c"),
        ("QUERY_STRING", ""),
    ],
    head=jhead(method="GET", path="/files/a%2Fb%20c"),
)

valid(
    "utf8_path_consistent",
    "percent-encoded UTF-8 in REQUEST_URI, raw UTF-8 in PATH_INFO: consistent, raw path kept",
    [
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/caf%C3%A9?q=%C3%A9"),
        ("PATH_INFO", "/caf\u00e9"),
        ("QUERY_STRING", "q=%C3%A9"),
    ],
    head=jhead(method="GET", path="/caf%C3%A9", query="q=%C3%A9"),
)

valid(
    "path_info_only_reencoded",
    "no REQUEST_URI: PATH_INFO is percent-encoded (space, %, ?, #, non-ASCII, controls)",
    [("REQUEST_METHOD", "GET"), ("PATH_INFO", b"/a b%?#\xc3\xa9\x7f\r\n")],
    head=jhead(method="GET", path="/a%20b%25%3F%23%C3%A9%7F%0D%0A"),
)

valid(
    "script_name_stripped_empty_path_info",
    "uwsgi_param SCRIPT_NAME /app with PATH_INFO '' (a regex location capture): SCRIPT_NAME and an empty PATH_INFO become params",
    [
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/app"),
        ("PATH_INFO", ""),
        ("QUERY_STRING", ""),
        ("SCRIPT_NAME", "/app"),
    ],
    head=jhead(
        method="GET", path="/app", params=[("SCRIPT_NAME", "/app"), ("PATH_INFO", "")]
    ),
)

valid(
    "bare_question_mark",
    "REQUEST_URI '/x?' with QUERY_STRING '': the query is present and empty",
    [
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/x?"),
        ("PATH_INFO", "/x"),
        ("QUERY_STRING", ""),
    ],
    head=jhead(method="GET", path="/x", query=""),
)

valid(
    "args_cleared_by_rewrite",
    "REQUEST_URI has '?a=1' but QUERY_STRING is '' (rewrite ... ?): no query, REQUEST_URI kept as a param",
    [
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/x?a=1"),
        ("PATH_INFO", "/x"),
        ("QUERY_STRING", ""),
    ],
    head=jhead(method="GET", path="/x", params=[("REQUEST_URI", "/x?a=1")]),
)

valid(
    "repeated_vars_last_wins",
    "PATH_INFO and SERVER_NAME twice (stock uwsgi_params plus a custom uwsgi_param): the last wins; a repeated param is kept in order",
    [
        ("REQUEST_METHOD", "GET"),
        ("PATH_INFO", "/first"),
        ("SERVER_NAME", "a.example"),
        ("X_P", "1"),
        ("PATH_INFO", "/second"),
        ("SERVER_NAME", "b.example"),
        ("X_P", "2"),
    ],
    head=jhead(
        method="GET",
        path="/second",
        server_name="b.example",
        params=[("X_P", "1"), ("X_P", "2")],
    ),
)

valid(
    "repeated_headers_kept",
    "HTTP_ACCEPT and HTTP_COOKIE twice: repeated headers in order (the environ builder joins them)",
    [
        ("REQUEST_METHOD", "GET"),
        ("HTTP_ACCEPT", "a"),
        ("HTTP_COOKIE", "x=1"),
        ("HTTP_ACCEPT", "b"),
        ("HTTP_COOKIE", "y=2"),
    ],
    head=jhead(
        method="GET",
        headers=[
            ("Accept", "a"),
            ("Cookie", "x=1"),
            ("Accept", "b"),
            ("Cookie", "y=2"),
        ],
    ),
)

valid(
    "dropped_http_vars",
    "HTTP_PROXY (httpoxy), HTTP_CONTENT_LENGTH, HTTP_CONTENT_TYPE and HTTP_* names no header could map to (empty, '.', '-', space) are dropped; lower case and digits are fine",
    [
        ("REQUEST_METHOD", "GET"),
        ("HTTP_PROXY", "http://evil.example:3128"),
        ("HTTP_CONTENT_LENGTH", "10"),
        ("HTTP_CONTENT_TYPE", "text/plain"),
        ("HTTP_", "x"),
        ("HTTP_X.Y", "1"),
        ("HTTP_X-Y", "2"),
        ("HTTP_X Y", "3"),
        ("HTTP_x_custom2", "ok"),
    ],
    head=jhead(method="GET", headers=[("X-Custom2", "ok")]),
)

valid(
    "uwsgi_scheme_https",
    "UWSGI_SCHEME overrides REQUEST_SCHEME and implies TLS; HTTPS absent",
    [("REQUEST_METHOD", "GET"), ("REQUEST_SCHEME", "http"), ("UWSGI_SCHEME", "https")],
    head=jhead(method="GET", scheme="https", tls=True),
)

valid(
    "https_flag_without_scheme",
    "HTTPS '1' and no scheme var: tls, scheme https",
    [("REQUEST_METHOD", "GET"), ("HTTPS", "1")],
    head=jhead(method="GET", scheme="https", tls=True),
)

valid(
    "http2_protocol_kept",
    "SERVER_PROTOCOL HTTP/2.0 (nginx's spelling): version HTTP_2, and the exact spelling as a param",
    [("REQUEST_METHOD", "GET"), ("SERVER_PROTOCOL", "HTTP/2.0")],
    head=jhead(
        method="GET", version="HTTP_2", params=[("SERVER_PROTOCOL", "HTTP/2.0")]
    ),
)

valid(
    "unknown_protocol_kept",
    "an unknown SERVER_PROTOCOL: version UNSPECIFIED, value kept as a param",
    [("REQUEST_METHOD", "GET"), ("SERVER_PROTOCOL", "SPDY/3")],
    head=jhead(method="GET", params=[("SERVER_PROTOCOL", "SPDY/3")]),
)

valid(
    "ipv6_unix_socket_ports",
    "IPv6 client, empty REMOTE_PORT and SERVER_PORT (nginx on a Unix socket): ports 0",
    [
        ("REQUEST_METHOD", "GET"),
        ("REMOTE_ADDR", "2001:db8::1"),
        ("REMOTE_PORT", ""),
        ("SERVER_PORT", ""),
        ("SERVER_NAME", "_"),
    ],
    head=jhead(method="GET", client_addr="2001:db8::1", server_name="_"),
)

valid(
    "uwsgi_magic_vars_are_params",
    "uWSGI's magic vars (UWSGI_SCRIPT, UWSGI_CHDIR) mean nothing to uwire: plain params",
    [
        ("REQUEST_METHOD", "GET"),
        ("UWSGI_SCRIPT", "app:application"),
        ("UWSGI_CHDIR", "/srv/app"),
    ],
    head=jhead(
        method="GET",
        params=[("UWSGI_SCRIPT", "app:application"), ("UWSGI_CHDIR", "/srv/app")],
    ),
)

# ---------------------------------------------------------------------------
# uwsgi_invalid.json
# ---------------------------------------------------------------------------

INVALID = []


def invalid(name, description, wire, error, *, stage="decode", eof=None, limits=None):
    if eof is None:
        eof = stage == "decode" and error == "truncated"
    INVALID.append(
        {
            "name": name,
            "description": description,
            "limits": limits or {},
            "hex": as_bytes(wire).hex(),
            "eof": eof,
            "stage": stage,
            "error": error,
        }
    )


def raw_packet(block: bytes, datasize=None, modifier1=0) -> bytes:
    return (
        pkt_header(modifier1, len(block) if datasize is None else datasize, 0) + block
    )


GET = [("REQUEST_METHOD", "GET")]

invalid(
    "truncated_header", "2 of the 4 header bytes, then EOF", b"\x00\x10", "truncated"
)
invalid(
    "truncated_header_3",
    "3 of the 4 header bytes, then EOF",
    b"\x00\x10\x00",
    "truncated",
)
invalid(
    "truncated_block",
    "the header declares 21 block bytes, 10 arrive, then EOF",
    packet(GET)[:14],
    "truncated",
)
invalid(
    "truncated_block_empty",
    "a header declaring 5 block bytes, then EOF",
    pkt_header(0, 5, 0),
    "truncated",
)
invalid(
    "key_size_past_end",
    "the block's last byte is half a key size",
    raw_packet(vars_block(GET) + b"\x01"),
    "var_past_end",
)
invalid(
    "key_past_end",
    "key size 20 with 5 key bytes left in the block",
    raw_packet(b"\x14\x00ABCDE"),
    "var_past_end",
)
invalid(
    "value_size_past_end",
    "a key, then only one byte of the value size",
    raw_packet(b"\x01\x00A\x05"),
    "var_past_end",
)
invalid(
    "value_past_end",
    "value size 9 with 3 value bytes left in the block",
    raw_packet(b"\x01\x00A\x09\x00abc"),
    "var_past_end",
)
invalid(
    "value_size_past_end_exact",
    "a key ending exactly at the block end, no value size",
    raw_packet(vars_block(GET) + b"\x03\x00KEY"),
    "var_past_end",
)
invalid("empty_key", "key size 0", raw_packet(b"\x00\x00\x03\x00abc"), "empty_key")
invalid(
    "too_many_vars",
    "3 vars with max_vars 2",
    packet(GET + [("A", "1"), ("B", "2")]),
    "too_many_vars",
    limits={"max_vars": 2},
)
invalid(
    "duplicate_content_length",
    "CONTENT_LENGTH twice with the same value",
    packet(GET + [("CONTENT_LENGTH", "5"), ("CONTENT_LENGTH", "5")]),
    "duplicate_content_length",
)
invalid(
    "duplicate_content_length_empty",
    "CONTENT_LENGTH twice, both empty",
    packet(GET + [("CONTENT_LENGTH", ""), ("CONTENT_LENGTH", "")]),
    "duplicate_content_length",
)
for cname, value, desc in [
    ("content_length_non_numeric", "abc", "letters"),
    ("content_length_negative", "-1", "a minus sign"),
    ("content_length_plus", "+5", "a plus sign"),
    ("content_length_leading_space", " 5", "a leading space"),
    ("content_length_trailing_space", "5 ", "a trailing space"),
    ("content_length_overflow", "18446744073709551616", "2^64, one past u64"),
    ("content_length_hex", "0x10", "hex notation"),
    ("content_length_list", "5, 5", "an HTTP-style list"),
]:
    invalid(
        cname,
        f"CONTENT_LENGTH with {desc}: {value!r}",
        packet(GET + [("CONTENT_LENGTH", value)]),
        "invalid_content_length",
    )
invalid(
    "body_too_large",
    "CONTENT_LENGTH 11 with max_body_size 10",
    packet(GET + [("CONTENT_LENGTH", "11")]),
    "body_too_large",
    limits={"max_body_size": 10},
)
invalid(
    "block_over_limit",
    "header only, datasize 4097 with max_block_size 4096: refused before any block byte is buffered",
    pkt_header(0, 4097, 0),
    "block_too_large",
    limits={"max_block_size": 4096},
)
invalid(
    "block_over_limit_max",
    "header only, datasize 65535 with max_block_size 100",
    pkt_header(0, 0xFFFF, 0),
    "block_too_large",
    limits={"max_block_size": 100},
)
invalid(
    "unsupported_modifier_ping",
    "modifier1 100 (uWSGI ping)",
    pkt_header(100, 0, 0),
    "unsupported_modifier",
)
invalid(
    "unsupported_modifier_psgi",
    "modifier1 5 (PSGI request): nginx configured for another runtime",
    packet(GET, modifier1=5),
    "unsupported_modifier",
)
invalid(
    "unsupported_modifier_uwire_preface",
    "the uwire/1 preface read as a uwsgi header: modifier1 0x9A",
    bytes.fromhex("9a555731ffff0d0a"),
    "unsupported_modifier",
)
invalid(
    "order_modifier_before_size",
    "modifier1 30 and a datasize over the limit: the modifier is reported",
    pkt_header(30, 0xFFFF, 0),
    "unsupported_modifier",
    limits={"max_block_size": 100},
)

# Packets that decode but are no request.
invalid(
    "crlf_in_header_value",
    "CR LF in an HTTP_* value (header injection)",
    packet(GET + [("HTTP_X_FOO", "a\r\nSet-Cookie: x=1")]),
    "invalid_value",
    stage="head",
)
invalid(
    "lf_in_param_value",
    "LF in a param value",
    packet(GET + [("DOCUMENT_ROOT", "/srv\n")]),
    "invalid_value",
    stage="head",
)
invalid(
    "nul_in_query_string",
    "NUL in QUERY_STRING",
    packet(GET + [("QUERY_STRING", "a\x00b")]),
    "invalid_value",
    stage="head",
)
invalid(
    "encoded_nul_in_request_uri",
    "REQUEST_URI whose path decodes to a NUL (%00), even when PATH_INFO disagrees",
    packet([("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/x%00"), ("PATH_INFO", "/x")]),
    "invalid_value",
    stage="head",
)
invalid(
    "encoded_nul_in_agreeing_request_uri",
    "REQUEST_URI '/a%00b' agreeing with PATH_INFO 'a NUL b'",
    packet(
        [("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/a%00b"), ("PATH_INFO", "/a\x00b")]
    ),
    "invalid_value",
    stage="head",
)
invalid(
    "cr_in_dropped_var",
    "CR in HTTP_PROXY: values are checked before dropping",
    packet(GET + [("HTTP_PROXY", "x\ry")]),
    "invalid_value",
    stage="head",
)
invalid(
    "missing_method",
    "no REQUEST_METHOD",
    packet([("PATH_INFO", "/")]),
    "invalid_method",
    stage="head",
)
invalid(
    "empty_method",
    "REQUEST_METHOD ''",
    packet([("REQUEST_METHOD", "")]),
    "invalid_method",
    stage="head",
)
invalid(
    "method_not_token",
    "REQUEST_METHOD 'GET /'",
    packet([("REQUEST_METHOD", "GET /")]),
    "invalid_method",
    stage="head",
)
invalid(
    "var_name_with_space",
    "a param name with a space",
    packet(GET + [("MY VAR", "1")]),
    "invalid_var_name",
    stage="head",
)
invalid(
    "var_name_binary",
    "a param name of bytes ff fe",
    packet(GET + [(b"\xff\xfe", "1")]),
    "invalid_var_name",
    stage="head",
)
invalid(
    "remote_port_not_numeric",
    "REMOTE_PORT 'http'",
    packet(GET + [("REMOTE_PORT", "http")]),
    "invalid_port",
    stage="head",
)
invalid(
    "server_port_overflow",
    "SERVER_PORT 65536",
    packet(GET + [("SERVER_PORT", "65536")]),
    "invalid_port",
    stage="head",
)

# ---------------------------------------------------------------------------
# uwsgi_response.json
# ---------------------------------------------------------------------------

RESPONSES = []


def response(
    name,
    description,
    wire,
    *,
    status=None,
    reason=None,
    version=None,
    headers=(),
    body=None,
    length=None,
    body_bytes=b"",
    rest=b"",
    error=None,
    stage="head",
    eof=False,
    limits=None,
    head_request=False,
):
    case = {
        "name": name,
        "description": description,
        "limits": limits or {},
        "head_request": head_request,
        "hex": as_bytes(wire).hex(),
        "eof": eof,
    }
    if error is None:
        assert body in ("length", "chunked", "close", "empty", "interim", "upgrade")
        case["response"] = {
            "status": status,
            "reason": None if reason is None else jbytes(reason),
            "version": version,
            "headers": jpairs(headers),
            "body": body,
            "content_length": length,
        }
        case["body_hex"] = as_bytes(body_bytes).hex()
        case["rest_hex"] = as_bytes(rest).hex()
    else:
        case["stage"] = stage
        case["error"] = error
    RESPONSES.append(case)


response(
    "status_line_length",
    "HTTP/1.1 status line, Content-Length body, then bytes that are not part of it",
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 5\r\n\r\nhelloEXTRA",
    status=200,
    reason="OK",
    version="HTTP_1_1",
    headers=[("Content-Type", "text/html; charset=utf-8"), ("Content-Length", "5")],
    body="length",
    length=5,
    body_bytes=b"hello",
    rest=b"EXTRA",
)
response(
    "status_line_http10_close",
    "HTTP/1.0 404 without Content-Length: the body runs to the end of the connection",
    b"HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno such page",
    eof=True,
    status=404,
    reason="Not Found",
    version="HTTP_1_0",
    headers=[("Content-Type", "text/plain")],
    body="close",
    body_bytes=b"no such page",
)
response(
    "status_line_no_reason",
    "'HTTP/1.1 204' with no reason phrase: reason null, no body",
    b"HTTP/1.1 204\r\n\r\n",
    status=204,
    version="HTTP_1_1",
    body="empty",
)
response(
    "status_line_empty_reason",
    "'HTTP/1.1 200 ' with an empty reason phrase: reason ''",
    b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n",
    status=200,
    reason="",
    version="HTTP_1_1",
    headers=[("Content-Length", "0")],
    body="length",
    length=0,
)
response(
    "status_line_status_field_kept",
    "in the status-line form a Status field is an ordinary header",
    b"HTTP/1.1 200 OK\r\nStatus: 500 Oops\r\n\r\n",
    eof=True,
    status=200,
    reason="OK",
    version="HTTP_1_1",
    headers=[("Status", "500 Oops")],
    body="close",
)
response(
    "cgi_status_field",
    "CGI style: 'Status: 404 Not Found' gives the status and is removed",
    b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope",
    eof=True,
    status=404,
    reason="Not Found",
    headers=[("Content-Type", "text/plain")],
    body="close",
    body_bytes=b"nope",
)
response(
    "cgi_status_code_only",
    "CGI style: 'Status: 503' without a reason",
    b"Status: 503\r\nRetry-After: 10\r\n\r\n",
    eof=True,
    status=503,
    headers=[("Retry-After", "10")],
    body="close",
)
response(
    "cgi_location_only",
    "CGI style: Location without Status means 302",
    b"Location: https://example.com/next\r\n\r\n",
    eof=True,
    status=302,
    headers=[("Location", "https://example.com/next")],
    body="close",
)
response(
    "cgi_default_200",
    "CGI style without Status or Location: 200",
    b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
    status=200,
    headers=[("Content-Type", "text/plain"), ("Content-Length", "2")],
    body="length",
    length=2,
    body_bytes=b"hi",
)
response(
    "cgi_status_with_location",
    "CGI style: an explicit Status wins over the Location default",
    b"Status: 301 Moved Permanently\r\nLocation: /new\r\n\r\n",
    eof=True,
    status=301,
    reason="Moved Permanently",
    headers=[("Location", "/new")],
    body="close",
)
response(
    "bare_lf_line_ends",
    "lines ending in a bare LF are accepted",
    b"HTTP/1.1 200 OK\nX-A: 1\n\nbody",
    eof=True,
    status=200,
    reason="OK",
    version="HTTP_1_1",
    headers=[("X-A", "1")],
    body="close",
    body_bytes=b"body",
)
response(
    "raw_names_order_ows",
    "header names keep their case and order, repeats kept, whitespace around values trimmed",
    b"HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nX-Two:\t x \t\r\nSet-Cookie: b=2\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n",
    status=200,
    reason="OK",
    version="HTTP_1_1",
    headers=[
        ("set-cookie", "a=1"),
        ("X-Two", "x"),
        ("Set-Cookie", "b=2"),
        ("X-Empty", ""),
        ("Content-Length", "0"),
    ],
    body="length",
    length=0,
)
response(
    "chunked_body",
    "Transfer-Encoding: chunked: the body is dechunked, bytes after it are left",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\nNEXT",
    status=200,
    reason="OK",
    version="HTTP_1_1",
    headers=[("Transfer-Encoding", "chunked")],
    body="chunked",
    body_bytes=b"hello, world",
    rest=b"NEXT",
)
response(
    "chunked_ext_trailers",
    "chunk extensions, upper-case hex, leading zeros and a trailer section are accepted and ignored",
    b'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n00A;name="v"\r\n0123456789\r\n0\r\nX-Checksum: 1\r\n\r\n',
    status=200,
    reason="OK",
    version="HTTP_1_1",
    headers=[("Transfer-Encoding", "gzip, chunked")],
    body="chunked",
    body_bytes=b"0123456789",
)
response(
    "transfer_encoding_not_chunked",
    "a Transfer-Encoding whose last coding is not chunked: read to the end",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nraw",
    eof=True,
    status=200,
    reason="OK",
    version="HTTP_1_1",
    headers=[("Transfer-Encoding", "chunked, gzip")],
    body="close",
    body_bytes=b"raw",
)
response(
    "content_length_list_same",
    "'Content-Length: 3, 3' is one length",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc",
    status=200,
    reason="OK",
    version="HTTP_1_1",
    headers=[("Content-Length", "3, 3")],
    body="length",
    length=3,
    body_bytes=b"abc",
)
response(
    "head_request_no_body",
    "the answer to HEAD has no body whatever Content-Length says",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
    head_request=True,
    status=200,
    reason="OK",
    version="HTTP_1_1",
    headers=[("Content-Length", "1234")],
    body="empty",
)
response(
    "not_modified_no_body",
    "304 has no body",
    b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n',
    status=304,
    reason="Not Modified",
    version="HTTP_1_1",
    headers=[("ETag", '"x"')],
    body="empty",
)
response(
    "interim_continue",
    "100 Continue is interim: another head follows (left in the buffer)",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
    status=100,
    reason="Continue",
    version="HTTP_1_1",
    body="interim",
    rest=b"HTTP/1.1 200 OK\r\n\r\n",
)
response(
    "upgrade_websocket",
    "101 Switching Protocols: the connection is handed over",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x00",
    status=101,
    reason="Switching Protocols",
    version="HTTP_1_1",
    headers=[("Upgrade", "websocket"), ("Connection", "Upgrade")],
    body="upgrade",
    rest=b"\x81\x00",
)
response(
    "obs_text_reason_and_value",
    "bytes 0x80..0xFF are allowed in the reason and in values",
    b"HTTP/1.1 200 \xc3\x9cber\r\nX-L: caf\xe9\r\nContent-Length: 0\r\n\r\n",
    status=200,
    reason="\u00dcber",
    version="HTTP_1_1",
    headers=[("X-L", b"caf\xe9"), ("Content-Length", "0")],
    body="length",
    length=0,
)
HEAD_AT_64 = b"HTTP/1.1 200 OK\r\nX: " + b"a" * (64 - 24) + b"\r\n\r\n"
assert len(HEAD_AT_64) == 64
response(
    "head_exactly_at_limit",
    "a 64-byte head (blank line included) with max_response_head 64",
    HEAD_AT_64,
    limits={"max_response_head": 64},
    eof=True,
    status=200,
    reason="OK",
    version="HTTP_1_1",
    headers=[("X", "a" * 40)],
    body="close",
)

# Invalid responses.
for rname, wire, desc in [
    ("status_code_two_digits", b"HTTP/1.1 20 OK\r\n\r\n", "a two-digit status"),
    ("status_code_four_digits", b"HTTP/1.1 2000 OK\r\n\r\n", "a four-digit status"),
    ("status_code_below_100", b"HTTP/1.1 099 Low\r\n\r\n", "status 099"),
    ("http_version_2", b"HTTP/2 200 OK\r\n\r\n", "'HTTP/2' in a status line"),
    ("http_version_1_2", b"HTTP/1.2 200 OK\r\n\r\n", "'HTTP/1.2'"),
    (
        "status_line_double_space",
        b"HTTP/1.1  200 OK\r\n\r\n",
        "two spaces after the version",
    ),
    (
        "space_before_colon",
        b"HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n",
        "whitespace between name and colon",
    ),
    ("name_with_space", b"HTTP/1.1 200 OK\r\nX A: 1\r\n\r\n", "a space inside a name"),
    ("missing_colon", b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", "a line without a colon"),
    ("obs_fold", b"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\n\r\n", "obsolete line folding"),
    ("nul_in_value", b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n", "NUL in a value"),
    (
        "bare_cr_in_value",
        b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n",
        "a bare CR in a value",
    ),
    ("cgi_status_not_numeric", b"Status: OK\r\n\r\n", "a Status field without a code"),
    ("cgi_status_out_of_range", b"Status: 099\r\n\r\n", "Status 099"),
    (
        "cgi_duplicate_status",
        b"Status: 200 OK\r\nStatus: 404 Not Found\r\n\r\n",
        "two Status fields",
    ),
    ("cgi_no_fields", b"\r\nbody", "a head that is only the blank line"),
]:
    response(rname, f"malformed head: {desc}", wire, error="invalid_response_head")
for rname, wire, desc in [
    (
        "content_length_invalid",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "a non-numeric Content-Length",
    ),
    (
        "content_length_negative",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "a negative Content-Length",
    ),
    (
        "content_length_conflict",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "two different Content-Length fields",
    ),
    (
        "content_length_list_conflict",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
        "a Content-Length list with different values",
    ),
    (
        "transfer_encoding_and_length",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "both Transfer-Encoding and Content-Length",
    ),
    (
        "transfer_encoding_http10",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "Transfer-Encoding in an HTTP/1.0 response",
    ),
]:
    response(rname, f"bad framing: {desc}", wire, error="invalid_response_framing")
response(
    "head_too_large",
    "70 bytes without the end of the head, max_response_head 64: refused without waiting",
    b"HTTP/1.1 200 OK\r\nX: " + b"a" * 50,
    error="response_head_too_large",
    limits={"max_response_head": 64},
)
response(
    "head_over_limit_by_one",
    "a complete 65-byte head with max_response_head 64",
    b"HTTP/1.1 200 OK\r\nX: " + b"a" * 41 + b"\r\n\r\n",
    error="response_head_too_large",
    limits={"max_response_head": 64},
)
response(
    "truncated_head",
    "the server closes inside the head",
    b"HTTP/1.1 200 OK\r\nX-A: 1\r\n",
    error="truncated",
    eof=True,
)
response(
    "truncated_nothing",
    "the server closes without sending anything",
    b"",
    error="truncated",
    eof=True,
)
response(
    "chunk_size_not_hex",
    "a chunk size line that is not hex",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    error="invalid_chunk",
    stage="body",
)
response(
    "chunk_size_overflow",
    "a chunk size of 17 significant hex digits",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
    error="invalid_chunk",
    stage="body",
)
response(
    "chunk_data_no_crlf",
    "chunk data not followed by CRLF",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
    error="invalid_chunk",
    stage="body",
)
response(
    "chunked_truncated",
    "the server closes inside a chunk",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    error="truncated",
    stage="body",
    eof=True,
)
response(
    "chunked_no_last_chunk",
    "the server closes after a complete chunk but before the last one",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n",
    error="truncated",
    stage="body",
    eof=True,
)

# ---------------------------------------------------------------------------
# uwsgi_encode.json
# ---------------------------------------------------------------------------

ENCODES = []

BASE_ENC_HEAD = {
    "method": "GET",
    "scheme": "http",
    "authority": "example.com",
    "path": "/",
    "query": None,
    "version": "HTTP_1_1",
    "headers": [("Host", "example.com")],
    "client_addr": "192.0.2.10",
    "client_port": 54321,
    "server_name": "example.com",
    "server_port": 80,
    "tls": False,
    "params": [],
    "body_length": None,
}


def std_vars(**over):
    """nginx's uwsgi_params order, with values overridden by keyword (None drops one)."""
    base = [
        ("QUERY_STRING", ""),
        ("REQUEST_METHOD", "GET"),
        ("CONTENT_TYPE", ""),
        ("CONTENT_LENGTH", ""),
        ("REQUEST_URI", "/"),
        ("PATH_INFO", "/"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "http"),
        ("HTTPS", None),
        ("REMOTE_ADDR", "192.0.2.10"),
        ("REMOTE_PORT", "54321"),
        ("SERVER_PORT", "80"),
        ("SERVER_NAME", "example.com"),
    ]
    for k in over:
        assert any(k == b for b, _ in base), k
    out = []
    for k, v in base:
        v = over.get(k, v)
        if v is not None:
            out.append((k, v))
    return out


def encode(
    name,
    description,
    *,
    head=None,
    body_length=None,
    expect=None,
    error=None,
    limits=None,
):
    h = dict(BASE_ENC_HEAD)
    h.update(head or {})
    case = {
        "name": name,
        "description": description,
        "limits": limits or {},
        "head": jhead(**h),
        "body_length": body_length,
    }
    if error is None:
        case["vars"] = jpairs(expect)
        case["hex"] = packet(expect).hex()
    else:
        case["error"] = error
    ENCODES.append(case)


encode(
    "basic_get",
    "a GET with a Host header: the stock uwsgi_params set, empty CONTENT_TYPE and CONTENT_LENGTH",
    expect=std_vars() + [("HTTP_HOST", "example.com")],
)
encode(
    "post_with_body",
    "POST with Content-Type and Content-Length headers: they feed CONTENT_TYPE/CONTENT_LENGTH (from body_length), never HTTP_CONTENT_*",
    head={
        "method": "POST",
        "path": "/api/items",
        "query": "dry=1",
        "headers": [
            ("Host", "example.com"),
            ("Content-Type", "application/json"),
            ("Content-Length", "13"),
            ("Content-Type", "text/plain"),
        ],
        "body_length": 13,
    },
    body_length=13,
    expect=std_vars(
        QUERY_STRING="dry=1",
        REQUEST_METHOD="POST",
        CONTENT_TYPE="application/json",
        CONTENT_LENGTH="13",
        REQUEST_URI="/api/items?dry=1",
        PATH_INFO="/api/items",
    )
    + [("HTTP_HOST", "example.com")],
)
encode(
    "tls_ipv6_no_server_fields",
    "TLS, a bracketed IPv6 client, no server name or port: HTTPS on, SERVER_NAME/SERVER_PORT from the authority",
    head={
        "scheme": "https",
        "tls": True,
        "authority": "example.com:8443",
        "headers": [("Host", "example.com:8443")],
        "client_addr": "[2001:db8::7]",
        "server_name": "",
        "server_port": 0,
    },
    expect=std_vars(
        REQUEST_SCHEME="https",
        HTTPS="on",
        REMOTE_ADDR="2001:db8::7",
        SERVER_PORT="8443",
    )
    + [("HTTP_HOST", "example.com:8443")],
)
encode(
    "defaults_without_authority",
    "no authority, server name or port, unknown client port, empty scheme: localhost, 80, http, empty REMOTE_PORT; no HTTP_HOST",
    head={
        "scheme": "",
        "authority": "",
        "headers": [],
        "server_name": "",
        "server_port": 0,
        "client_port": 0,
        "version": "UNSPECIFIED",
    },
    expect=std_vars(REMOTE_PORT="", SERVER_PORT="80", SERVER_NAME="localhost"),
)
encode(
    "authority_without_host_header",
    "HTTP/2 style: an authority and no Host header gives HTTP_HOST",
    head={
        "version": "HTTP_2",
        "authority": "h2.example",
        "headers": [("Accept", "*/*")],
    },
    expect=std_vars(SERVER_PROTOCOL="HTTP/2")
    + [("HTTP_HOST", "h2.example"), ("HTTP_ACCEPT", "*/*")],
)
encode(
    "path_decoding",
    "PATH_INFO is the percent-decoded path (%2F decoded, '+' kept, bad escapes kept); REQUEST_URI raw",
    head={"path": "/a%2Fb/caf%C3%A9/x+y/%zz%4", "query": ""},
    expect=std_vars(
        REQUEST_URI="/a%2Fb/caf%C3%A9/x+y/%zz%4?", PATH_INFO="/a/b/caf\u00e9/x+y/%zz%4"
    )
    + [("HTTP_HOST", "example.com")],
)
encode(
    "repeated_headers_joined",
    "repeats and names that map alike are joined in order: ', ', and '; ' for Cookie",
    head={
        "headers": [
            ("Host", "example.com"),
            ("Accept", "text/html"),
            ("Cookie", "a=1"),
            ("accept", "*/*"),
            ("Cookie", "b=2"),
            ("X-Id", "1"),
            ("x-id", "2"),
        ]
    },
    expect=std_vars()
    + [
        ("HTTP_HOST", "example.com"),
        ("HTTP_ACCEPT", "text/html, */*"),
        ("HTTP_COOKIE", "a=1; b=2"),
        ("HTTP_X_ID", "1, 2"),
    ],
)
encode(
    "dropped_headers",
    "dropped: Proxy (httpoxy), names with '_' (CVE-2015-0219) or other non-alphanumerics; hop-by-hop headers pass as nginx passes them",
    head={
        "headers": [
            ("Host", "example.com"),
            ("Proxy", "http://evil:3128"),
            ("X_User", "root"),
            ("X.Dot", "1"),
            ("Connection", "keep-alive"),
            ("Transfer-Encoding", "chunked"),
        ]
    },
    expect=std_vars()
    + [
        ("HTTP_HOST", "example.com"),
        ("HTTP_CONNECTION", "keep-alive"),
        ("HTTP_TRANSFER_ENCODING", "chunked"),
    ],
)
encode(
    "params_override_and_append",
    "params replace a var of the same name in place (last repeat wins), are appended otherwise; a CONTENT_LENGTH param is ignored",
    head={
        "params": [
            ("SERVER_NAME", "public.example"),
            ("SCRIPT_NAME", "/app"),
            ("CONTENT_LENGTH", "999"),
            ("HTTP_HOST", "forced.example"),
            ("SCRIPT_NAME", "/app2"),
            ("UWSGI_SCHEME", "https"),
        ]
    },
    body_length=0,
    expect=std_vars(SERVER_NAME="public.example", CONTENT_LENGTH="0")
    + [
        ("HTTP_HOST", "forced.example"),
        ("SCRIPT_NAME", "/app2"),
        ("UWSGI_SCHEME", "https"),
    ],
)
encode(
    "method_not_token",
    "a method that is not a token",
    head={"method": "GET /"},
    error="invalid_method",
)
encode("empty_path", "an empty path", head={"path": ""}, error="invalid_value")
encode(
    "nul_in_path",
    "a path that decodes to a NUL (%00)",
    head={"path": "/a%00b"},
    error="invalid_value",
)
encode(
    "crlf_in_query",
    "CR LF in the query",
    head={"query": "a=1\r\nX: y"},
    error="invalid_value",
)
BIG_HDR = "v" * 65300
encode(
    "block_over_u16",
    "a header value that makes the block exceed 65535 bytes: refused, never truncated or wrapped (CVE-2020-11984)",
    head={"headers": [("Host", "example.com"), ("X-Big", BIG_HDR)]},
    error="block_too_large",
)
encode(
    "var_over_u16",
    "one value of 65536 bytes cannot be described by a u16 size",
    head={"headers": [("Host", "example.com"), ("X-Big", "v" * 65536)]},
    error="var_too_long",
)
encode(
    "block_over_configured_limit",
    "a block over max_block_size 4096 (uWSGI's default buffer-size)",
    head={"headers": [("Host", "example.com"), ("X-Big", "v" * 4000)]},
    limits={"max_block_size": 4096},
    error="block_too_large",
)

# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def render(cases) -> str:
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    doc = {"version": FORMAT_VERSION, "cases": cases}
    text = json.dumps(doc, indent=2, ensure_ascii=True)
    # One line per [name, value] pair (JSON strings hold no raw newline).
    pair = re.compile(r'\[\n\s*("(?:[^"\\]|\\.)*"),\n\s*("(?:[^"\\]|\\.)*")\n\s*\]')
    text = pair.sub(r"[\1, \2]", text)
    assert json.loads(text) == doc
    return text + "\n"


FILES = {
    "uwsgi_valid.json": VALID,
    "uwsgi_invalid.json": INVALID,
    "uwsgi_response.json": RESPONSES,
    "uwsgi_encode.json": ENCODES,
}


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for fname, cases in FILES.items():
        path = OUT_DIR / fname
        text = render(cases)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(fname)
            continue
        path.write_text(text)
        print(f"wrote {path} ({len(cases)} cases)")
    if stale:
        print(
            f"stale: {', '.join(stale)}: run scripts/gen_uwsgi_vectors.py",
            file=sys.stderr,
        )
        return 1
    if check:
        print(
            "uwsgi vectors up to date: "
            + ", ".join(f"{f} {len(c)}" for f, c in FILES.items())
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
