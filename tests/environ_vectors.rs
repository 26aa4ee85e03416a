//! Runs the shared environ vectors (`tests/vectors/environ.json`, format in
//! `tests/vectors/ENVIRON.md`) against `uwire::environ::build`.
//!
//! Each case's environ must match exactly: the same set of names, the same
//! values. Strings are PEP 3333 native strings: one code point
//! U+0000..=U+00FF per byte.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::Value;
use uwire::environ::{build, check, Environ, EnvironConfig};
use uwire::frame::{HeaderBlock, HttpVersion, RequestHead};

const MIN_CASES: usize = 25;

/// A JSON string to bytes, one byte per code point (ISO-8859-1).
fn latin1(v: &Value, what: &str) -> Vec<u8> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v}"));
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or_else(|_| panic!("{what}: {c:?} > U+00FF")))
        .collect()
}

/// Bytes to a string, one code point per byte.
fn latin1_str(b: &[u8]) -> String {
    b.iter().map(|&b| char::from(b)).collect()
}

fn bytes(v: &Value, what: &str) -> Bytes {
    Bytes::from(latin1(v, what))
}

fn block(v: &Value, what: &str) -> HeaderBlock {
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = v
        .as_array()
        .unwrap_or_else(|| panic!("{what}: expected an array"))
        .iter()
        .map(|p| {
            let p = p.as_array().expect("pair");
            assert_eq!(p.len(), 2, "{what}: pairs have two strings");
            (latin1(&p[0], what), latin1(&p[1], what))
        })
        .collect();
    HeaderBlock::try_from_pairs(pairs).unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn version(v: &Value) -> HttpVersion {
    match v.as_str().expect("version is a string") {
        "UNSPECIFIED" => HttpVersion::UNSPECIFIED,
        "HTTP_0_9" => HttpVersion::HTTP_09,
        "HTTP_1_0" => HttpVersion::HTTP_10,
        "HTTP_1_1" => HttpVersion::HTTP_11,
        "HTTP_2" => HttpVersion::HTTP_2,
        "HTTP_3" => HttpVersion::HTTP_3,
        other => panic!("unknown version {other}"),
    }
}

fn port(v: &Value) -> u16 {
    u16::try_from(v.as_u64().expect("port is an integer")).expect("port fits u16")
}

fn head(h: &Value) -> RequestHead {
    let known = [
        "method",
        "scheme",
        "authority",
        "path",
        "query",
        "version",
        "headers",
        "client_addr",
        "client_port",
        "server_name",
        "server_port",
        "tls",
        "params",
        "body_length",
    ];
    for k in h.as_object().expect("head is an object").keys() {
        assert!(known.contains(&k.as_str()), "unknown head field {k}");
    }
    RequestHead {
        method: bytes(&h["method"], "method"),
        scheme: bytes(&h["scheme"], "scheme"),
        authority: bytes(&h["authority"], "authority"),
        path: bytes(&h["path"], "path"),
        query: match &h["query"] {
            Value::Null => None,
            q => Some(bytes(q, "query")),
        },
        version: version(&h["version"]),
        headers: block(&h["headers"], "headers"),
        client_addr: bytes(&h["client_addr"], "client_addr"),
        client_port: port(&h["client_port"]),
        server_name: bytes(&h["server_name"], "server_name"),
        server_port: port(&h["server_port"]),
        tls: h["tls"].as_bool().expect("tls is a bool"),
        params: block(&h["params"], "params"),
        body_length: h["body_length"].as_u64(),
        upgrade: None,
    }
}

fn config(c: &Value) -> EnvironConfig {
    let mut config = EnvironConfig::default();
    for (k, v) in c.as_object().expect("config is an object") {
        match k.as_str() {
            "script_name" => config.script_name(bytes(v, k)),
            "allow_underscore_headers" => config.allow_underscore_headers(v.as_bool().unwrap()),
            "default_server_name" => config.default_server_name(bytes(v, k)),
            "default_server_port" => config.default_server_port(Some(port(v))),
            "server_software" => config.server_software(bytes(v, k)),
            "max_size" => config.max_size(Some(v.as_u64().unwrap() as usize)),
            other => panic!("unknown config key {other}"),
        };
    }
    config
}

fn as_map(env: &Environ) -> BTreeMap<String, String> {
    let map: BTreeMap<_, _> = env
        .iter()
        .map(|(n, v)| (latin1_str(n), latin1_str(v)))
        .collect();
    assert_eq!(map.len(), env.len(), "environ names are unique");
    map
}

#[test]
fn environ_vectors() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/environ.json");
    let text = std::fs::read_to_string(path).expect("read environ.json");
    let doc: Value = serde_json::from_str(&text).expect("environ.json is JSON");
    assert_eq!(doc["version"], 1);
    let cases = doc["cases"].as_array().expect("cases");
    assert!(
        cases.len() >= MIN_CASES,
        "only {} cases: truncated file?",
        cases.len()
    );

    let mut names = std::collections::HashSet::new();
    let mut errors = 0;
    for case in cases {
        let name = case["name"].as_str().expect("name");
        assert!(names.insert(name), "duplicate case {name}");
        assert!(case["description"].is_string(), "{name}: description");
        let (h, c) = (head(&case["head"]), config(&case["config"]));
        let result = build(&h, &c);
        // The runtime checks every request with `check` and builds the
        // environ later, when asked: both must refuse the same heads with
        // the same error, and `check` hands back the environ exactly when
        // it had to build it (a size limit).
        match (check(&h, &c), &result) {
            (Ok(Some(built)), Ok(env)) => {
                assert!(c.max_size.is_some(), "{name}: built without a limit");
                assert_eq!(&built, env, "{name}");
            }
            (Ok(None), Ok(_)) => assert!(c.max_size.is_none(), "{name}: limit unchecked"),
            (Err(a), Err(b)) => assert_eq!(&a, b, "{name}"),
            (checked, built) => panic!("{name}: check {checked:?} but build {built:?}"),
        }
        match (&case["environ"], &case["error"]) {
            (Value::Object(want), Value::Null) => {
                let env = result.unwrap_or_else(|e| panic!("{name}: unexpected error {e}"));
                let got = as_map(&env);
                let want: BTreeMap<String, String> = want
                    .iter()
                    .map(|(k, v)| (k.clone(), latin1_str(&latin1(v, k))))
                    .collect();
                assert_eq!(got, want, "{name}");
                // The JSON rendering decodes to the same environ.
                let rendered: BTreeMap<String, String> =
                    serde_json::from_str(&env.to_json_string()).expect("to_json_string is JSON");
                assert_eq!(rendered, want, "{name}: to_json_string");
            }
            (Value::Null, Value::String(class)) => {
                errors += 1;
                match result {
                    Ok(env) => panic!("{name}: expected {class}, got {:?}", as_map(&env)),
                    Err(e) => assert_eq!(e.class(), class, "{name}: {e}"),
                }
            }
            _ => panic!("{name}: a case has exactly one of environ and error"),
        }
    }
    assert!(errors > 0 && errors < cases.len());
}
