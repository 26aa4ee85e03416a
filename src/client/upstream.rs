//! Upstream addresses: where the proxy sends requests, and in which protocol.

use std::fmt;
use std::path::PathBuf;

/// Which wire protocol an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// uwire/1: pooled, multiplexed connections.
    Uwire,
    /// Classic uwsgi: one connection per request (as the protocol requires).
    Uwsgi,
}

/// The transport of an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A Unix socket path.
    Unix(PathBuf),
    /// A TCP `host:port`.
    Tcp(String),
}

/// An upstream: protocol plus transport, written `unix:/run/app.sock`,
/// `tcp:127.0.0.1:9000`, `uwsgi+unix:/run/uwsgi.sock` or
/// `uwsgi+tcp:127.0.0.1:3031` (`uwire+` may prefix the first two).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upstream {
    /// Protocol.
    pub protocol: Protocol,
    /// Transport.
    pub transport: Transport,
}

impl std::str::FromStr for Upstream {
    type Err = String;

    fn from_str(s: &str) -> Result<Upstream, String> {
        let (protocol, rest) = if let Some(r) = s.strip_prefix("uwsgi+") {
            (Protocol::Uwsgi, r)
        } else if let Some(r) = s.strip_prefix("uwire+") {
            (Protocol::Uwire, r)
        } else {
            (Protocol::Uwire, s)
        };
        let transport = if let Some(p) = rest.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(format!("{s:?}: unix: needs a path"));
            }
            Transport::Unix(PathBuf::from(p))
        } else if let Some(a) = rest.strip_prefix("tcp:") {
            if !a.contains(':') {
                return Err(format!("{s:?}: tcp: needs host:port"));
            }
            Transport::Tcp(a.to_string())
        } else if rest.starts_with('/') {
            Transport::Unix(PathBuf::from(rest))
        } else {
            return Err(format!(
                "unknown upstream {s:?}: use unix:/path, tcp:host:port, or uwsgi+unix:/path, uwsgi+tcp:host:port"
            ));
        };
        Ok(Upstream {
            protocol,
            transport,
        })
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.protocol == Protocol::Uwsgi {
            f.write_str("uwsgi+")?;
        }
        match &self.transport {
            Transport::Unix(p) => write!(f, "unix:{}", p.display()),
            Transport::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_upstreams() {
        let u: Upstream = "unix:/run/app.sock".parse().unwrap();
        assert_eq!(u.protocol, Protocol::Uwire);
        assert_eq!(u.transport, Transport::Unix("/run/app.sock".into()));
        let u: Upstream = "uwsgi+tcp:127.0.0.1:3031".parse().unwrap();
        assert_eq!(u.protocol, Protocol::Uwsgi);
        assert_eq!(u.to_string(), "uwsgi+tcp:127.0.0.1:3031");
        assert!("tcp:nohost".parse::<Upstream>().is_err());
        assert!("http://x".parse::<Upstream>().is_err());
    }
}
