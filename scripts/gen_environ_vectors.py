#!/usr/bin/env python3
"""Writes tests/vectors/environ.json, the shared CGI/WSGI environ vectors.

Every expected environ below is written by hand (a base environ plus the
changes each case makes); nothing is computed by an implementation. See
tests/vectors/ENVIRON.md for the format.

    scripts/gen_environ_vectors.py          # (re)write the file
    scripts/gen_environ_vectors.py --check  # fail if the file is stale

Strings are PEP 3333 "native strings": one code point U+0000..U+00FF per
byte (ISO-8859-1), so "\\xe9" below is the single byte 0xE9.
"""

import json
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "environ.json"

BASE_HEAD = {
    "method": "GET",
    "scheme": "http",
    "authority": "example.com",
    "path": "/",
    "query": None,
    "version": "HTTP_1_1",
    "headers": [["Host", "example.com"]],
    "client_addr": "192.0.2.10",
    "client_port": 54321,
    "server_name": "example.com",
    "server_port": 80,
    "tls": False,
    "params": [],
    "body_length": None,
}

# The environ of BASE_HEAD with the default config.
BASE_ENV = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/",
    "QUERY_STRING": "",
    "REQUEST_URI": "/",
    "REQUEST_SCHEME": "http",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "SERVER_NAME": "example.com",
    "SERVER_PORT": "80",
    "SERVER_SOFTWARE": "uwire",
    "GATEWAY_INTERFACE": "CGI/1.1",
    "REMOTE_ADDR": "192.0.2.10",
    "REMOTE_PORT": "54321",
    "HTTP_HOST": "example.com",
}

CASES = []
DROP = object()  # marks a variable of BASE_ENV that the case removes


def case(name, description, head=None, env=None, config=None, error=None):
    full_head = dict(BASE_HEAD)
    full_head.update(head or {})
    c = {
        "name": name,
        "description": description,
        "config": config or {},
        "head": full_head,
    }
    if error is not None:
        assert env is None
        c["error"] = error
    else:
        expected = dict(BASE_ENV)
        for k, v in (env or {}).items():
            if v is DROP:
                del expected[k]
            else:
                expected[k] = v
        c["environ"] = expected
    CASES.append(c)


def host(*more):
    """Headers: the base Host header followed by `more` pairs."""
    return [["Host", "example.com"], *[list(p) for p in more]]


# --- request line -----------------------------------------------------------

case(
    "simple_get",
    "a plain GET: every server variable, HTTP_HOST from the Host header",
    head={"path": "/hello"},
    env={"PATH_INFO": "/hello", "REQUEST_URI": "/hello"},
)

case(
    "query_absent",
    "no '?' in the target: QUERY_STRING is empty, REQUEST_URI has no '?'",
    head={"path": "/search", "query": None},
    env={"PATH_INFO": "/search", "REQUEST_URI": "/search"},
)

case(
    "query_empty",
    "a bare '?': QUERY_STRING is empty, REQUEST_URI keeps the '?'",
    head={"path": "/search", "query": ""},
    env={"PATH_INFO": "/search", "REQUEST_URI": "/search?"},
)

case(
    "query_raw",
    "the query is passed raw: no decoding of %XX or '+'",
    head={"path": "/s", "query": "q=a%20b+c&x=%FF&y=%00"},
    env={
        "PATH_INFO": "/s",
        "QUERY_STRING": "q=a%20b+c&x=%FF&y=%00",
        "REQUEST_URI": "/s?q=a%20b+c&x=%FF&y=%00",
    },
)

case(
    "path_percent_decoded",
    "PATH_INFO is percent-decoded, %2F included; REQUEST_URI stays raw",
    head={"path": "/files/a%20b/c%2Fd%2f"},
    env={"PATH_INFO": "/files/a b/c/d/", "REQUEST_URI": "/files/a%20b/c%2Fd%2f"},
)

case(
    "path_non_utf8",
    "decoding yields raw bytes: %E9 and %FF are single bytes, %C3%A9 two",
    head={"path": "/caf%E9/%ff/%C3%A9"},
    env={"PATH_INFO": "/caf\xe9/\xff/\xc3\xa9", "REQUEST_URI": "/caf%E9/%ff/%C3%A9"},
)

case(
    "path_plus_and_bad_escapes",
    "'+' is not a space in paths; a '%' without two hex digits stays",
    head={"path": "/a+b/%zz/%4/%"},
    env={"PATH_INFO": "/a+b/%zz/%4/%", "REQUEST_URI": "/a+b/%zz/%4/%"},
)

case(
    "path_nul_encoded",
    "%00 in the path is refused (RFC 3986 7.3)",
    head={"path": "/a%00.txt"},
    error="nul_in_target",
)

case(
    "path_asterisk",
    "OPTIONS *: the path is passed as is",
    head={"method": "OPTIONS", "path": "*"},
    env={"REQUEST_METHOD": "OPTIONS", "PATH_INFO": "*", "REQUEST_URI": "*"},
)

# --- mount prefix (SCRIPT_NAME) -------------------------------------------

case(
    "mount_prefix_match",
    "a path under the mount prefix is split into SCRIPT_NAME and PATH_INFO",
    config={"script_name": "/app"},
    head={"path": "/app/users/7"},
    env={"SCRIPT_NAME": "/app", "PATH_INFO": "/users/7", "REQUEST_URI": "/app/users/7"},
)

case(
    "mount_prefix_exact",
    "the path equals the prefix: PATH_INFO is empty",
    config={"script_name": "/app"},
    head={"path": "/app"},
    env={"SCRIPT_NAME": "/app", "PATH_INFO": "", "REQUEST_URI": "/app"},
)

case(
    "mount_prefix_trailing_slash",
    "the prefix and a slash: PATH_INFO is '/'",
    config={"script_name": "/app"},
    head={"path": "/app/"},
    env={"SCRIPT_NAME": "/app", "PATH_INFO": "/", "REQUEST_URI": "/app/"},
)

case(
    "mount_prefix_not_segment_boundary",
    "/application is not under /app: SCRIPT_NAME empty, full path",
    config={"script_name": "/app"},
    head={"path": "/application/x"},
    env={"PATH_INFO": "/application/x", "REQUEST_URI": "/application/x"},
)

case(
    "mount_prefix_no_match",
    "a path elsewhere: SCRIPT_NAME empty, PATH_INFO the whole path",
    config={"script_name": "/app"},
    head={"path": "/static/app.css"},
    env={"PATH_INFO": "/static/app.css", "REQUEST_URI": "/static/app.css"},
)

case(
    "mount_prefix_config_normalised",
    "the configured prefix is normalised: 'app//' means '/app'",
    config={"script_name": "app//"},
    head={"path": "/app/x"},
    env={"SCRIPT_NAME": "/app", "PATH_INFO": "/x", "REQUEST_URI": "/app/x"},
)

case(
    "mount_prefix_root_is_no_prefix",
    "a prefix of '/' mounts at the root",
    config={"script_name": "/"},
    head={"path": "/x"},
    env={"PATH_INFO": "/x", "REQUEST_URI": "/x"},
)

case(
    "mount_prefix_decoded_segments",
    "segments are compared decoded: /%61pp is under /app",
    config={"script_name": "/app"},
    head={"path": "/%61pp/a%20b"},
    env={"SCRIPT_NAME": "/app", "PATH_INFO": "/a b", "REQUEST_URI": "/%61pp/a%20b"},
)

case(
    "mount_prefix_encoded_slash",
    "/app%2Fx is one segment, not /app then /x",
    config={"script_name": "/app"},
    head={"path": "/app%2Fx"},
    env={"PATH_INFO": "/app/x", "REQUEST_URI": "/app%2Fx"},
)

case(
    "mount_prefix_nested",
    "a multi-segment prefix",
    config={"script_name": "/api/v1"},
    head={"path": "/api/v1/items", "query": "page=2"},
    env={
        "SCRIPT_NAME": "/api/v1",
        "PATH_INFO": "/items",
        "QUERY_STRING": "page=2",
        "REQUEST_URI": "/api/v1/items?page=2",
    },
)

# --- body length and type -------------------------------------------------

case(
    "post_content_length_and_type",
    "Content-Type and Content-Length feed CONTENT_TYPE/CONTENT_LENGTH only",
    head={
        "method": "POST",
        "path": "/form",
        "body_length": 13,
        "headers": host(
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Content-Length", "13"),
        ),
    },
    env={
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/form",
        "REQUEST_URI": "/form",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": "13",
    },
)

case(
    "content_length_header_only",
    "a Content-Length header without body_length: CONTENT_LENGTH, never HTTP_CONTENT_LENGTH",
    head={"method": "PUT", "headers": host(("content-length", "5"))},
    env={"REQUEST_METHOD": "PUT", "CONTENT_LENGTH": "5"},
)

case(
    "body_length_hint_without_header",
    "body_length alone (e.g. HTTP/2 without content-length)",
    head={"method": "POST", "body_length": 42},
    env={"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "42"},
)

case(
    "body_length_wins",
    "body_length is authoritative over the Content-Length header",
    head={
        "method": "POST",
        "body_length": 7,
        "headers": host(("Content-Length", "10")),
    },
    env={"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "7"},
)

case(
    "chunked_no_length",
    "chunked upload: no CONTENT_LENGTH, Transfer-Encoding visible as HTTP_TRANSFER_ENCODING",
    head={
        "method": "POST",
        "headers": host(
            ("Transfer-Encoding", "chunked"),
            ("Content-Type", "application/octet-stream"),
        ),
    },
    env={
        "REQUEST_METHOD": "POST",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "CONTENT_TYPE": "application/octet-stream",
    },
)

case(
    "content_length_duplicate_identical",
    "repeated identical Content-Length (and '5, 5', leading zeros) is one value",
    head={
        "method": "POST",
        "headers": host(("Content-Length", "5"), ("Content-Length", "5, 005")),
    },
    env={"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "5"},
)

case(
    "content_length_conflicting",
    "Content-Length 5 and 6: refused (request smuggling)",
    head={
        "method": "POST",
        "headers": host(("Content-Length", "5"), ("Content-Length", "6")),
    },
    error="conflicting_content_length",
)

case(
    "content_length_conflicting_list",
    "Content-Length '5, 6': refused",
    head={"method": "POST", "headers": host(("Content-Length", "5, 6"))},
    error="conflicting_content_length",
)

case(
    "content_length_non_numeric",
    "Content-Length 'abc': refused",
    head={"method": "POST", "headers": host(("Content-Length", "abc"))},
    error="invalid_content_length",
)

case(
    "content_length_negative",
    "Content-Length '-1': refused",
    head={"method": "POST", "headers": host(("Content-Length", "-1"))},
    error="invalid_content_length",
)

case(
    "content_length_overflow",
    "Content-Length above 2^64-1: refused",
    head={
        "method": "POST",
        "headers": host(("Content-Length", "18446744073709551616")),
    },
    error="invalid_content_length",
)

case(
    "content_length_invalid_despite_body_length",
    "a malformed Content-Length is refused even with body_length",
    head={
        "method": "POST",
        "body_length": 3,
        "headers": host(("Content-Length", "3x")),
    },
    error="invalid_content_length",
)

case(
    "content_length_with_transfer_encoding",
    "both Content-Length and Transfer-Encoding: refused",
    head={
        "method": "POST",
        "headers": host(("Transfer-Encoding", "chunked"), ("Content-Length", "5")),
    },
    error="content_length_with_transfer_encoding",
)

case(
    "content_type_conflicting",
    "two different Content-Type headers: refused",
    head={
        "method": "POST",
        "headers": host(("Content-Type", "text/plain"), ("Content-Type", "text/html")),
    },
    error="conflicting_content_type",
)

case(
    "content_type_duplicate_identical",
    "two identical Content-Type headers are one",
    head={
        "method": "POST",
        "headers": host(("Content-Type", "text/plain"), ("content-type", "text/plain")),
    },
    env={"REQUEST_METHOD": "POST", "CONTENT_TYPE": "text/plain"},
)

# --- headers ----------------------------------------------------------------

case(
    "repeated_headers_joined",
    "repeats are joined in order with ', '",
    head={
        "headers": host(
            ("Accept", "text/html"),
            ("X-Forwarded-For", "203.0.113.1"),
            ("accept", "*/*"),
            ("X-Forwarded-For", "198.51.100.2"),
        )
    },
    env={
        "HTTP_ACCEPT": "text/html, */*",
        "HTTP_X_FORWARDED_FOR": "203.0.113.1, 198.51.100.2",
    },
)

case(
    "cookie_joined",
    "Cookie repeats are joined with '; ' (RFC 9113 8.2.3)",
    head={"headers": host(("Cookie", "a=1"), ("cookie", "b=2; c=3"))},
    env={"HTTP_COOKIE": "a=1; b=2; c=3"},
)

case(
    "mixed_case_header_name",
    "names are uppercased: x-FoO becomes HTTP_X_FOO",
    head={"headers": host(("x-FoO", "bar"))},
    env={"HTTP_X_FOO": "bar"},
)

case(
    "header_merge_same_variable",
    "Foo-Bar and foo-bar are one variable, merged in order",
    head={"headers": host(("Foo-Bar", "1"), ("X-Other", "o"), ("foo-bar", "2"))},
    env={"HTTP_FOO_BAR": "1, 2", "HTTP_X_OTHER": "o"},
)

case(
    "underscore_header_dropped",
    "X_Auth_User is dropped by default, so it cannot spoof X-Auth-User (CVE-2015-0219)",
    head={
        "headers": host(
            ("X-Auth-User", "alice"), ("X_Auth_User", "admin"), ("Under_Only", "u")
        )
    },
    env={"HTTP_X_AUTH_USER": "alice"},
)

case(
    "underscore_header_allowed",
    "allow_underscore_headers maps them, merging with the dash form",
    config={"allow_underscore_headers": True},
    head={
        "headers": host(
            ("X-Auth-User", "alice"), ("X_Auth_User", "admin"), ("Under_Only", "u")
        )
    },
    env={"HTTP_X_AUTH_USER": "alice, admin", "HTTP_UNDER_ONLY": "u"},
)

case(
    "invalid_name_characters_dropped",
    "names with characters other than letters, digits, '-' (and '_') are dropped",
    config={"allow_underscore_headers": True},
    head={
        "headers": host(
            ("X.Dot", "1"), ("X+Plus", "2"), ("X~Tilde", "3"), ("X-Ok", "4")
        )
    },
    env={"HTTP_X_OK": "4"},
)

case(
    "proxy_header_dropped",
    "the Proxy header never becomes HTTP_PROXY (httpoxy, CVE-2016-5385)",
    head={"headers": host(("Proxy", "http://evil.example:8080"))},
)

case(
    "proxy_header_dropped_with_underscores",
    "Proxy is dropped whatever the config",
    config={"allow_underscore_headers": True},
    head={"headers": host(("proxy", "http://evil.example:8080"), ("X_Proxy", "kept"))},
    env={"HTTP_X_PROXY": "kept"},
)

case(
    "content_headers_underscore_forms_dropped",
    "Content_Length / Content_Type never map, even when underscores are allowed",
    config={"allow_underscore_headers": True},
    head={
        "method": "POST",
        "headers": host(
            ("Content_Length", "999"),
            ("Content_Type", "evil/x"),
            ("Content-Length", "2"),
        ),
    },
    env={"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "2"},
)

case(
    "headers_cannot_set_server_variables",
    "every header gets the HTTP_ prefix",
    head={
        "headers": host(
            ("Remote-Addr", "10.0.0.1"), ("Server-Name", "evil"), ("Https", "on")
        )
    },
    env={
        "HTTP_REMOTE_ADDR": "10.0.0.1",
        "HTTP_SERVER_NAME": "evil",
        "HTTP_HTTPS": "on",
    },
)

case(
    "duplicate_host",
    "more than one Host header: refused (RFC 9112 3.2)",
    head={"headers": host(("Host", "other.example"))},
    error="duplicate_host",
)

case(
    "authorization_kept",
    "Authorization is passed as HTTP_AUTHORIZATION (WSGI practice)",
    head={"headers": host(("Authorization", "Bearer abc"))},
    env={"HTTP_AUTHORIZATION": "Bearer abc"},
)

case(
    "header_values_latin1_and_empty",
    "values are raw bytes (0xE9 stays one byte); empty values are kept",
    head={"headers": host(("X-Name", "Jos\xe9"), ("X-Empty", ""))},
    env={"HTTP_X_NAME": "Jos\xe9", "HTTP_X_EMPTY": ""},
)

# --- connection facts -------------------------------------------------------

case(
    "tls_https_on",
    "a TLS connection: HTTPS=on, scheme https, port 443",
    head={"scheme": "https", "tls": True, "server_port": 443},
    env={"REQUEST_SCHEME": "https", "HTTPS": "on", "SERVER_PORT": "443"},
)

case(
    "ipv6_client",
    "an IPv6 client address",
    head={"client_addr": "2001:db8::1", "client_port": 61000},
    env={"REMOTE_ADDR": "2001:db8::1", "REMOTE_PORT": "61000"},
)

case(
    "ipv6_client_bracketed",
    "brackets around an IPv6 client address are removed",
    head={"client_addr": "[2001:db8::2]"},
    env={"REMOTE_ADDR": "2001:db8::2"},
)

case(
    "unknown_client",
    "no client address or port: REMOTE_ADDR empty, REMOTE_PORT absent",
    head={"client_addr": "", "client_port": 0},
    env={"REMOTE_ADDR": "", "REMOTE_PORT": DROP},
)

case(
    "http_1_0_without_host",
    "HTTP/1.0 without Host and no authority: no HTTP_HOST",
    head={"version": "HTTP_1_0", "authority": "", "headers": []},
    env={"SERVER_PROTOCOL": "HTTP/1.0", "HTTP_HOST": DROP},
)

case(
    "http_2_authority",
    "HTTP/2 with :authority and no Host header: HTTP_HOST from the authority",
    head={
        "version": "HTTP_2",
        "scheme": "https",
        "tls": True,
        "authority": "example.com:8443",
        "server_port": 8443,
        "headers": [["user-agent", "h2load"]],
    },
    env={
        "SERVER_PROTOCOL": "HTTP/2",
        "REQUEST_SCHEME": "https",
        "HTTPS": "on",
        "SERVER_PORT": "8443",
        "HTTP_HOST": "example.com:8443",
        "HTTP_USER_AGENT": "h2load",
    },
)

case(
    "http_3",
    "HTTP/3 protocol string",
    head={"version": "HTTP_3"},
    env={"SERVER_PROTOCOL": "HTTP/3"},
)

case(
    "server_from_authority",
    "no server name/port in the head: both from the authority",
    head={
        "server_name": "",
        "server_port": 0,
        "authority": "api.example.com:8080",
        "headers": [["Host", "api.example.com:8080"]],
    },
    env={
        "SERVER_NAME": "api.example.com",
        "SERVER_PORT": "8080",
        "HTTP_HOST": "api.example.com:8080",
    },
)

case(
    "server_defaults",
    "nothing in the head: the configured defaults",
    config={"default_server_name": "fallback.local", "default_server_port": 8000},
    head={"server_name": "", "server_port": 0, "authority": "", "headers": []},
    env={"SERVER_NAME": "fallback.local", "SERVER_PORT": "8000", "HTTP_HOST": DROP},
)

case(
    "server_defaults_scheme_port",
    "nothing in the head and no configured port: 443 for a TLS request",
    head={
        "server_name": "",
        "server_port": 0,
        "authority": "",
        "headers": [],
        "scheme": "",
        "tls": True,
    },
    env={
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "443",
        "REQUEST_SCHEME": "https",
        "HTTPS": "on",
        "HTTP_HOST": DROP,
    },
)

# --- params -----------------------------------------------------------------

case(
    "params_from_proxy",
    "proxy params are appended as given",
    head={"params": [["UWSGI_SCHEME", "https"], ["DOCUMENT_ROOT", "/srv/www"]]},
    env={"UWSGI_SCHEME": "https", "DOCUMENT_ROOT": "/srv/www"},
)

case(
    "params_override",
    "params replace computed variables (last repeat wins); a CONTENT_LENGTH param is ignored",
    head={
        "method": "POST",
        "body_length": 4,
        "params": [
            ["SERVER_NAME", "public.example"],
            ["HTTP_HOST", "public.example"],
            ["SCRIPT_NAME", "/forced"],
            ["CONTENT_LENGTH", "999"],
            ["X_EXTRA", "1"],
            ["X_EXTRA", "2"],
        ],
    },
    env={
        "REQUEST_METHOD": "POST",
        "CONTENT_LENGTH": "4",
        "SERVER_NAME": "public.example",
        "HTTP_HOST": "public.example",
        "SCRIPT_NAME": "/forced",
        "X_EXTRA": "2",
    },
)

case(
    "params_not_filtered",
    "params are trusted: HTTP_PROXY from the proxy is kept",
    head={"params": [["HTTP_PROXY", "http://egress.internal:3128"]]},
    env={"HTTP_PROXY": "http://egress.internal:3128"},
)

# --- limits -----------------------------------------------------------------

case(
    "environ_too_large",
    "max_size counts names plus values",
    config={"max_size": 100},
    head={"headers": host(("X-Big", "x" * 100))},
    error="environ_too_large",
)

case(
    "custom_server_software",
    "server_software from the config",
    config={"server_software": "myapp/2"},
    env={"SERVER_SOFTWARE": "myapp/2"},
)


def render():
    doc = {"version": 1, "cases": CASES}
    text = json.dumps(doc, indent=2, ensure_ascii=True)
    # One line per [name, value] pair (JSON strings hold no raw newline).
    pair = re.compile(r'\[\n\s*("(?:[^"\\]|\\.)*"),\n\s*("(?:[^"\\]|\\.)*")\n\s*\]')
    text = pair.sub(r"[\1, \2]", text)
    assert json.loads(text) == doc
    return text + "\n"


def main():
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "duplicate case names"
    text = render()
    if "--check" in sys.argv[1:]:
        if not OUT.exists() or OUT.read_text() != text:
            sys.exit(f"{OUT} is stale: run scripts/gen_environ_vectors.py")
        print(f"{OUT.name}: {len(CASES)} cases, up to date")
        return
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(CASES)} cases)")


if __name__ == "__main__":
    main()
