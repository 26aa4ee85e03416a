//! [`EnvironConfig`]: how the app side turns request heads into environs.

use bytes::{BufMut, Bytes, BytesMut};

/// Settings for [`build`](super::build).
///
/// Every field is public and has a setter that returns `&mut Self`, so a
/// config can be built in one expression:
///
/// ```
/// use uwire::environ::EnvironConfig;
/// let mut config = EnvironConfig::default();
/// config.script_name("/app/").allow_underscore_headers(false);
/// assert_eq!(&config.script_name[..], b"/app");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironConfig {
    /// Mount prefix of the application (decoded bytes, not percent-encoded),
    /// e.g. `/app`. Empty (the default) mounts the application at the root.
    ///
    /// The [`script_name`](Self::script_name) setter normalises the value to
    /// a leading `/`, no trailing `/` and no empty segments (`app//x/` becomes
    /// `/app/x`, `/` becomes empty). [`build`](super::build) applies the same
    /// normalisation when the field was assigned directly.
    pub script_name: Bytes,
    /// Map header names containing `_` to `HTTP_*` variables. Default
    /// `false`: such headers are dropped, as nginx (`underscores_in_headers
    /// off`) and Apache 2.4 do, because `X-User` and `X_User` would both
    /// become `HTTP_X_USER` (CVE-2015-0219).
    pub allow_underscore_headers: bool,
    /// `SERVER_NAME` when the head has no server name and no host in its
    /// authority. Default `localhost` (PEP 3333: never empty).
    pub default_server_name: Bytes,
    /// `SERVER_PORT` when the head has no server port and its authority no
    /// port. `None` (the default) means the scheme's port: 443 for `https`
    /// (or a TLS connection), 80 otherwise.
    pub default_server_port: Option<u16>,
    /// `SERVER_SOFTWARE` (RFC 3875 4.1.17). Default `uwire`.
    pub server_software: Bytes,
    /// Largest environ accepted, counted as the sum of the byte lengths of
    /// every name and value. `None` (the default) means no limit beyond the
    /// codec's head size limit.
    pub max_size: Option<usize>,
}

impl Default for EnvironConfig {
    fn default() -> EnvironConfig {
        EnvironConfig {
            script_name: Bytes::new(),
            allow_underscore_headers: false,
            default_server_name: Bytes::from_static(b"localhost"),
            default_server_port: None,
            server_software: Bytes::from_static(b"uwire"),
            max_size: None,
        }
    }
}

impl EnvironConfig {
    /// Sets the mount prefix, normalised (see [`EnvironConfig::script_name`]
    /// the field).
    pub fn script_name(&mut self, prefix: impl Into<Bytes>) -> &mut Self {
        self.script_name = normalize_script_name(prefix.into());
        self
    }

    /// Sets `allow_underscore_headers`.
    pub fn allow_underscore_headers(&mut self, allow: bool) -> &mut Self {
        self.allow_underscore_headers = allow;
        self
    }

    /// Sets `default_server_name`. An empty name restores `localhost`.
    pub fn default_server_name(&mut self, name: impl Into<Bytes>) -> &mut Self {
        let name = name.into();
        self.default_server_name = if name.is_empty() {
            Bytes::from_static(b"localhost")
        } else {
            name
        };
        self
    }

    /// Sets `default_server_port` (`None`: the scheme's port).
    pub fn default_server_port(&mut self, port: Option<u16>) -> &mut Self {
        self.default_server_port = port;
        self
    }

    /// Sets `server_software`.
    pub fn server_software(&mut self, software: impl Into<Bytes>) -> &mut Self {
        self.server_software = software.into();
        self
    }

    /// Sets `max_size` (`None`: unlimited).
    pub fn max_size(&mut self, limit: Option<usize>) -> &mut Self {
        self.max_size = limit;
        self
    }
}

/// Whether `s` is already in normal form: empty, or `/seg(/seg)*` with no
/// empty segment and no trailing slash.
pub(crate) fn is_normalized_script_name(s: &[u8]) -> bool {
    s.is_empty()
        || (s[0] == b'/' && s[s.len() - 1] != b'/' && memchr::memmem::find(s, b"//").is_none())
}

/// Normalises a mount prefix: leading `/`, no trailing `/`, no empty
/// segments; `""` and `"/"` become empty. Reuses `s` when already normal.
pub(crate) fn normalize_script_name(s: Bytes) -> Bytes {
    if is_normalized_script_name(&s) {
        return s;
    }
    let mut out = BytesMut::with_capacity(s.len() + 1);
    for seg in s.split(|&b| b == b'/').filter(|seg| !seg.is_empty()) {
        out.put_u8(b'/');
        out.put_slice(seg);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_name_is_normalised() {
        for (input, want) in [
            ("", ""),
            ("/", ""),
            ("//", ""),
            ("/app", "/app"),
            ("app", "/app"),
            ("/app/", "/app"),
            ("app//v1///", "/app/v1"),
            ("/a/b", "/a/b"),
        ] {
            let got = normalize_script_name(Bytes::from(input));
            assert_eq!(&got[..], want.as_bytes(), "input {input:?}");
            assert!(is_normalized_script_name(&got));
        }
    }

    #[test]
    fn setters_chain() {
        let mut c = EnvironConfig::default();
        c.script_name("x/")
            .allow_underscore_headers(true)
            .default_server_name("")
            .default_server_port(Some(8080))
            .server_software("test/1")
            .max_size(Some(10));
        assert_eq!(&c.script_name[..], b"/x");
        assert!(c.allow_underscore_headers);
        assert_eq!(&c.default_server_name[..], b"localhost");
        assert_eq!(c.default_server_port, Some(8080));
        assert_eq!(&c.server_software[..], b"test/1");
        assert_eq!(c.max_size, Some(10));
    }
}
