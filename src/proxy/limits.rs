//! Connection caps: a per-IP count beside the total (a semaphore in the
//! accept loop). A connection over its IP's cap is closed at once, before
//! anything is read from it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Open connections per client IP.
#[derive(Debug)]
pub(crate) struct PerIp {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    /// A cap of `max` per IP (0: none).
    pub(crate) fn new(max: usize) -> Arc<PerIp> {
        Arc::new(PerIp {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `ip`, or `None` at the cap.
    pub(crate) fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        if self.max == 0 {
            return Some(IpSlot(None));
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpSlot(Some((self.clone(), ip))))
    }

    /// Connections open from `ip` (tests and metrics).
    #[cfg(test)]
    fn count(&self, ip: IpAddr) -> usize {
        self.open.lock().unwrap().get(&ip).copied().unwrap_or(0)
    }
}

/// One connection's place under its IP's cap; released on drop.
#[derive(Debug)]
pub(crate) struct IpSlot(Option<(Arc<PerIp>, IpAddr)>);

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Some((limits, ip)) = self.0.take() {
            let mut open = limits.open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = open.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_ip_and_releases() {
        let l = PerIp::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = l.try_acquire(a).unwrap();
        let _s2 = l.try_acquire(a).unwrap();
        assert!(l.try_acquire(a).is_none());
        let _s3 = l.try_acquire(b).unwrap();
        drop(s1);
        assert_eq!(l.count(a), 1);
        assert!(l.try_acquire(a).is_some());
        let unlimited = PerIp::new(0);
        let many: Vec<_> = (0..100)
            .map(|_| unlimited.try_acquire(a).unwrap())
            .collect();
        assert_eq!(many.len(), 100);
    }
}
