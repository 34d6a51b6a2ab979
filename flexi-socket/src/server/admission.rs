//! Admission: the places under a server's connection limits
//! (`max_connections`, `max_connections_per_ip`, the places reserved for
//! other addresses). A TCP server takes a permit before it accepts, so at
//! the limit peers wait in the backlog; a UDP server tries for a place when
//! a new peer's datagram arrives.

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
    /// When fewer places than this are free, an address holding this many
    /// gets no more (0: never).
    reserved_for_others: usize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why an address got no place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_connections_per_ip`.
    PerIpCap,
    /// The last free places are kept for other addresses.
    Reserved,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PerIpCap => "the address is at max_connections_per_ip",
            Self::Reserved => {
                "the last free places are kept for other addresses (reserve_for_other_ips)"
            }
        })
    }
}

impl Admission {
    pub(crate) fn new(limits: &Limits) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            per_ip_cap: limits.max_connections_per_ip,
            reserved_for_others: limits
                .reserved_for_others
                .unwrap_or(limits.max_connections / 10),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Whether connections are counted per address at all.
    fn counts_per_ip(&self) -> bool {
        self.per_ip_cap.is_some() || self.reserved_for_others > 0
    }

    /// Waits for room under `max_connections`; `None` if there will be none.
    pub(crate) async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.permits).acquire_owned().await.ok()
    }

    /// The place of a connection from `ip` (none for a Unix peer) that
    /// holds `permit`, or why the address gets none.
    pub(crate) fn admit(
        self: &Arc<Self>,
        permit: OwnedSemaphorePermit,
        ip: Option<IpAddr>,
    ) -> Result<Place, Refusal> {
        let ip = self.claim_ip(ip)?;
        Ok(Place {
            _permit: permit,
            _ip: ip,
        })
    }

    /// A place without waiting (for a datagram session), or `None` at the
    /// connection cap or when the address gets none.
    pub(crate) fn try_admit(self: &Arc<Self>, ip: IpAddr) -> Option<Place> {
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok()?;
        self.admit(permit, Some(ip)).ok()
    }

    /// Takes a per-IP slot, or says why the address gets none; a peer
    /// without an IP address (a Unix socket's) counts under no rule.
    fn claim_ip(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<IpSlot, Refusal> {
        // One client, one key: `::ffff:a.b.c.d` is `a.b.c.d` (dual-stack
        // listeners, PROXY headers of either family).
        let ip = ip.map(|ip| ip.to_canonical());
        let Some(ip) = ip.filter(|_| self.counts_per_ip()) else {
            return Ok(IpSlot {
                admission: Arc::clone(self),
                ip: None,
            });
        };
        // The caller's permit is taken already: these are the places left.
        let free = self.permits.available_permits();
        let mut per_ip = sync::lock(&self.per_ip);
        let open = per_ip.entry(ip).or_insert(0);
        if self.per_ip_cap.is_some_and(|cap| *open >= cap) {
            return Err(Refusal::PerIpCap);
        }
        let reserve = self.reserved_for_others;
        if free < reserve && *open >= reserve {
            return Err(Refusal::Reserved);
        }
        *open += 1;
        Ok(IpSlot {
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
        let Some(ip) = self.ip else {
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
