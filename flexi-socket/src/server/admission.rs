//! Admission: the places under a server's connection limits
//! (`max_connections`, `max_connections_per_ip`). A TCP server takes a
//! permit before it accepts, so at the limit peers wait in the backlog; a
//! UDP server tries for a place when a new peer's datagram arrives.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Limits;
use crate::sync;

/// A server's connection limits and what is taken of them.
#[derive(Debug)]
pub(crate) struct Admission {
    permits: Arc<Semaphore>,
    per_ip_cap: Option<usize>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Admission {
    pub(crate) fn new(limits: &Limits) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            per_ip_cap: limits.max_connections_per_ip,
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Waits for room under `max_connections`; `None` if there will be none.
    pub(crate) async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.permits).acquire_owned().await.ok()
    }

    /// The place of a connection from `ip` (none for a Unix peer) that
    /// holds `permit`, or `None` when the address is at its cap.
    pub(crate) fn admit(
        self: &Arc<Self>,
        permit: OwnedSemaphorePermit,
        ip: Option<IpAddr>,
    ) -> Option<Place> {
        let ip = self.claim_ip(ip)?;
        Some(Place {
            _permit: permit,
            _ip: ip,
        })
    }

    /// A place without waiting (for a datagram session), or `None` at the
    /// connection cap or the IP's cap.
    pub(crate) fn try_admit(self: &Arc<Self>, ip: IpAddr) -> Option<Place> {
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok()?;
        self.admit(permit, Some(ip))
    }

    /// Takes a per-IP slot, or `None` when the address is at its cap; a
    /// peer without an IP address (a Unix socket's) counts under no cap.
    fn claim_ip(self: &Arc<Self>, ip: Option<IpAddr>) -> Option<IpSlot> {
        // One client, one key: `::ffff:a.b.c.d` is `a.b.c.d` (dual-stack
        // listeners, PROXY headers of either family).
        let ip = ip.map(|ip| ip.to_canonical());
        let Some(ip) = ip else {
            return Some(IpSlot {
                admission: Arc::clone(self),
                ip: None,
            });
        };
        if let Some(cap) = self.per_ip_cap {
            let mut per_ip = sync::lock(&self.per_ip);
            let open = per_ip.entry(ip).or_insert(0);
            if *open >= cap {
                return None;
            }
            *open += 1;
        }
        Some(IpSlot {
            admission: Arc::clone(self),
            ip: Some(ip),
        })
    }
}

/// What an open connection holds: its place under the connection limits,
/// given back when dropped.
#[derive(Debug)]
pub(crate) struct Place {
    _permit: OwnedSemaphorePermit,
    _ip: IpSlot,
}

/// One connection's share of its IP's cap, given back on drop.
struct IpSlot {
    admission: Arc<Admission>,
    ip: Option<IpAddr>,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let Some(ip) = self.ip.filter(|_| self.admission.per_ip_cap.is_some()) else {
            return;
        };
        let mut per_ip = sync::lock(&self.admission.per_ip);
        if let Some(open) = per_ip.get_mut(&ip) {
            *open -= 1;
            if *open == 0 {
                per_ip.remove(&ip);
            }
        }
    }
}

impl fmt::Debug for IpSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpSlot").field("ip", &self.ip).finish()
    }
}
