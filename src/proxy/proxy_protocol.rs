//! The PROXY protocol (HAProxy's, versions 1 and 2) on the listener: a
//! load balancer that terminates TCP sends the real client address as a
//! header before the first byte of the connection. Parsing is the `ppp`
//! crate's; this file reads just enough bytes for it and hands back what
//! followed the header.
//!
//! With `--proxy-protocol` every connection must start with a header (the
//! spec forbids guessing); one that does not is closed. `LOCAL` (v2) and
//! `UNKNOWN` (v1) headers, sent by health checks, keep the peer address.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use ppp::{v1, v2, HeaderResult, PartialResult};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest header accepted: v1 is at most 107 bytes; v2 carries TLVs,
/// which load balancers keep small.
pub const MAX_HEADER: usize = 4096;

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyProtocolError {
    /// The bytes are not a PROXY header.
    #[error("invalid PROXY protocol header: {0}")]
    Invalid(String),
    /// The header is longer than [`MAX_HEADER`].
    #[error("PROXY protocol header longer than {MAX_HEADER} bytes")]
    TooLong,
    /// The connection ended (or failed) inside the header.
    #[error("connection closed inside the PROXY protocol header")]
    Eof(#[source] Option<std::io::Error>),
}

/// Outcome of parsing the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// A header of `len` bytes naming `source` (`None`: keep the peer's).
    Done {
        /// Header length in bytes.
        len: usize,
        /// The client it names.
        source: Option<SocketAddr>,
    },
}

/// Parses a PROXY header at the start of `buf` (pure).
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyProtocolError> {
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        // A v1 header is one CRLF-terminated line of at most 107 bytes;
        // ppp calls some malformed complete lines incomplete.
        if buf.starts_with(b"PROXY")
            && (memchr::memmem::find(buf, b"\r\n").is_some() || buf.len() >= 107)
        {
            return Err(ProxyProtocolError::Invalid(
                "malformed version 1 header".into(),
            ));
        }
        return if buf.len() >= MAX_HEADER {
            Err(ProxyProtocolError::TooLong)
        } else {
            Ok(Parsed::Incomplete)
        };
    }
    match result {
        HeaderResult::V1(Ok(h)) => {
            let source = match h.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            };
            Ok(Parsed::Done {
                len: h.header.len(),
                source,
            })
        }
        HeaderResult::V2(Ok(h)) => {
            let source = match (h.command, h.addresses) {
                (v2::Command::Local, _) => None,
                (_, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                _ => None,
            };
            Ok(Parsed::Done {
                len: h.len(),
                source,
            })
        }
        HeaderResult::V1(Err(e)) => Err(ProxyProtocolError::Invalid(e.to_string())),
        HeaderResult::V2(Err(e)) => Err(ProxyProtocolError::Invalid(e.to_string())),
    }
}

/// Reads a PROXY header from `io`. Returns the client it names and the
/// bytes read past it (the start of the TLS or HTTP stream).
pub async fn read_header<R: AsyncRead + Unpin>(
    io: &mut R,
) -> Result<(Option<SocketAddr>, Bytes), ProxyProtocolError> {
    let mut buf = BytesMut::with_capacity(512);
    loop {
        if !buf.is_empty() {
            if let Parsed::Done { len, source } = parse(&buf)? {
                let rest = buf.split_off(len).freeze();
                return Ok((source, rest));
            }
        }
        let n = io
            .read_buf(&mut buf)
            .await
            .map_err(|e| ProxyProtocolError::Eof(Some(e)))?;
        if n == 0 {
            return Err(ProxyProtocolError::Eof(None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_headers() {
        let h = b"PROXY TCP4 203.0.113.9 10.0.0.1 51234 443\r\nGET /";
        assert_eq!(
            parse(h).unwrap(),
            Parsed::Done {
                len: h.len() - 5,
                source: Some("203.0.113.9:51234".parse().unwrap())
            }
        );
        let h6 = b"PROXY TCP6 2001:db8::9 2001:db8::1 1000 80\r\n";
        assert!(matches!(
            parse(h6).unwrap(),
            Parsed::Done { source: Some(a), .. } if a == "[2001:db8::9]:1000".parse().unwrap()
        ));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n").unwrap(),
            Parsed::Done {
                len: 15,
                source: None
            }
        );
        assert_eq!(parse(b"PROXY TCP4 203.0").unwrap(), Parsed::Incomplete);
        assert!(parse(b"GET / HTTP/1.1\r\n\r\n").is_err());
        for bad in [
            &b"PROXY TCP4 nonsense\r\n\r\n"[..],
            b"PROXY TCP9 1.2.3.4 1.2.3.4 1 2\r\n",
        ] {
            assert!(
                parse(bad).is_err(),
                "{:?}: {:?}",
                String::from_utf8_lossy(bad),
                parse(bad)
            );
        }
    }

    #[test]
    fn v2_headers() {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0, 12]); // v2 PROXY, TCP over IPv4, 12 bytes
        h.extend_from_slice(&[198, 51, 100, 7, 10, 0, 0, 1]);
        h.extend_from_slice(&4000u16.to_be_bytes());
        h.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(parse(&h[..20]).unwrap(), Parsed::Incomplete);
        assert_eq!(
            parse(&h).unwrap(),
            Parsed::Done {
                len: 28,
                source: Some("198.51.100.7:4000".parse().unwrap())
            }
        );
        let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(
            parse(&local).unwrap(),
            Parsed::Done {
                len: 16,
                source: None
            }
        );
    }
}
