//! Behind a load balancer: which peers are trusted to say who the client is
//! (`--forwarded-allow-ips`, as gunicorn and uvicorn spell it) and what
//! their `X-Forwarded-For` / `X-Forwarded-Proto` mean.
//!
//! Pure: no sockets. A trusted peer's `X-Forwarded-For` is read from the
//! right, skipping addresses that are themselves trusted (nginx's
//! `real_ip_recursive on`); the first untrusted address is the client. An
//! untrusted peer's fields are never believed.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// An address range: an IP address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    addr: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Whether `ip` lies in the range. IPv4-mapped IPv6 addresses
    /// (`::ffff:a.b.c.d`) match IPv4 ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpRange {
    type Err = String;

    /// `10.0.0.1`, `10.0.0.0/8`, `::1`, `2001:db8::/32`.
    fn from_str(s: &str) -> Result<IpRange, String> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        };
        Ok(IpRange { addr, prefix })
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The peers trusted to set `X-Forwarded-For` and `X-Forwarded-Proto`.
/// Parsed from a comma-separated list of addresses and CIDR ranges, or `*`
/// (every peer). Empty by default: nobody is trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    ranges: Vec<IpRange>,
    all: bool,
}

impl TrustedProxies {
    /// Whether no peer is trusted.
    pub fn is_empty(&self) -> bool {
        !self.all && self.ranges.is_empty()
    }

    /// Whether `ip` is trusted.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.all || self.ranges.iter().any(|r| r.contains(ip))
    }

    /// Adds the ranges of another list.
    pub fn extend(&mut self, other: &TrustedProxies) {
        self.all |= other.all;
        self.ranges.extend_from_slice(&other.ranges);
    }

    /// The client address a request from `peer` carrying these
    /// `X-Forwarded-For` values stands for. An entry that does not parse
    /// ends the walk: nothing left of it can be believed.
    pub fn client<'a>(
        &self,
        peer: SocketAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>,
    ) -> SocketAddr {
        if !self.contains(peer.ip()) {
            return peer;
        }
        let mut client = peer;
        let entries = forwarded_for.rev().flat_map(|v| v.rsplit(|b| *b == b','));
        for entry in entries {
            let Some(addr) = parse_node(entry.trim_ascii()) else {
                break;
            };
            client = addr;
            if !self.contains(addr.ip()) {
                break;
            }
        }
        client
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    fn from_str(s: &str) -> Result<TrustedProxies, String> {
        let mut t = TrustedProxies::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "*" {
                t.all = true;
            } else {
                t.ranges.push(part.parse()?);
            }
        }
        Ok(t)
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self.ranges.iter().map(|r| r.to_string()).collect();
        if self.all {
            parts.push("*".into());
        }
        f.write_str(&parts.join(","))
    }
}

/// One `X-Forwarded-For` node: `ip`, `ip:port`, `[v6]` or `[v6]:port`.
fn parse_node(s: &[u8]) -> Option<SocketAddr> {
    let s = std::str::from_utf8(s).ok()?;
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    let v6 = s.strip_prefix('[')?.strip_suffix(']')?;
    v6.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
}

/// Whether the last `X-Forwarded-Proto` element says `https`.
pub fn proto_is_https<'a>(values: impl DoubleEndedIterator<Item = &'a [u8]>) -> bool {
    values
        .rev()
        .flat_map(|v| v.rsplit(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .find(|v| !v.is_empty())
        .is_some_and(|v| v.eq_ignore_ascii_case(b"https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_match_their_prefix() {
        let r: IpRange = "10.1.0.0/16".parse().unwrap();
        assert!(r.contains("10.1.200.3".parse().unwrap()));
        assert!(!r.contains("10.2.0.1".parse().unwrap()));
        assert!(r.contains("::ffff:10.1.0.9".parse().unwrap()));
        let all: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.1".parse().unwrap()));
        let v6: IpRange = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::5".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpRange>().is_err());
        assert!("nope".parse::<IpRange>().is_err());
    }

    #[test]
    fn client_walks_from_the_right_past_trusted_hops() {
        let t: TrustedProxies = "127.0.0.1, 10.0.0.0/8".parse().unwrap();
        let peer = sa("127.0.0.1:5000");
        let xff = [&b"203.0.113.9, 198.51.100.4"[..], b"10.0.0.7"];
        assert_eq!(t.client(peer, xff.into_iter()), sa("198.51.100.4:0"));
        // Untrusted peer: its header is ignored.
        assert_eq!(
            t.client(sa("192.0.2.1:1"), xff.into_iter()),
            sa("192.0.2.1:1")
        );
        // Garbage stops the walk at the last good address.
        let bad = [&b"203.0.113.9, junk, 10.0.0.8"[..]];
        assert_eq!(t.client(peer, bad.into_iter()), sa("10.0.0.8:0"));
        // Ports and brackets.
        let ported = [&b"[2001:db8::1]:443"[..]];
        assert_eq!(t.client(peer, ported.into_iter()), sa("[2001:db8::1]:443"));
        assert_eq!(t.client(peer, std::iter::empty()), peer);
        let star: TrustedProxies = "*".parse().unwrap();
        assert!(star.contains("192.0.2.44".parse().unwrap()));
    }

    #[test]
    fn proto_reads_the_last_element() {
        assert!(proto_is_https([&b"https"[..]].into_iter()));
        assert!(proto_is_https([&b"http, HTTPS"[..]].into_iter()));
        assert!(!proto_is_https([&b"https, http"[..]].into_iter()));
        assert!(!proto_is_https(std::iter::empty()));
    }
}
