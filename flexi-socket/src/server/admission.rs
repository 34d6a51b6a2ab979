//! Admission: the places under a server's connection limits
//! (`max_connections`, `max_connections_per_ip`, the places reserved for
//! other addresses). A TCP server takes a permit before it accepts, so at
//! the limit peers wait in the backlog; a UDP server tries for a place when
//! a new peer's datagram arrives.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
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
    /// Connections open per address (see [`ip_key`]).
    per_ip: Mutex<HashMap<Ipv6Addr, usize>>,
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
        // The place gives the permit back itself (see `Place`'s drop).
        permit.forget();
        Ok(Place {
            admission: Arc::clone(self),
            ip,
        })
    }

    /// A place without waiting (for a datagram session), or `None` at the
    /// connection cap or when the address gets none.
    pub(crate) fn try_admit(self: &Arc<Self>, ip: IpAddr) -> Option<Place> {
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok()?;
        self.admit(permit, Some(ip)).ok()
    }

    /// Counts a connection from `ip` under its address's cap, or says why
    /// the address gets none; a peer without an IP address (a Unix
    /// socket's) counts under no rule. The key counted is the one to give
    /// back ([`NOT_COUNTED`] if none).
    fn claim_ip(&self, ip: Option<IpAddr>) -> Result<Ipv6Addr, Refusal> {
        let Some(key) = ip.map(ip_key).filter(|key| *key != NOT_COUNTED) else {
            return Ok(NOT_COUNTED);
        };
        if !self.counts_per_ip() {
            return Ok(NOT_COUNTED);
        }
        // The caller's permit is taken already: these are the places left.
        let free = self.permits.available_permits();
        let mut per_ip = sync::lock(&self.per_ip);
        let open = per_ip.entry(key).or_insert(0);
        if self.per_ip_cap.is_some_and(|cap| *open >= cap) {
            return Err(Refusal::PerIpCap);
        }
        let reserve = self.reserved_for_others;
        if free < reserve && *open >= reserve {
            return Err(Refusal::Reserved);
        }
        *open += 1;
        Ok(key)
    }

    /// Gives back the share of the address counted under `key`.
    fn release_ip(&self, key: Ipv6Addr) {
        let mut per_ip = sync::lock(&self.per_ip);
        if let Some(open) = per_ip.get_mut(&key) {
            *open -= 1;
            if *open == 0 {
                per_ip.remove(&key);
            }
        }
    }
}

/// The key an address is counted under: one client, one key, so IPv4 is
/// counted as its IPv6-mapped form (`a.b.c.d` and `::ffff:a.b.c.d` alike:
/// dual-stack listeners, PROXY headers of either family).
fn ip_key(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The key of a [`Place`] whose address is not counted: `::`, which is no
/// peer's address (it is never a packet's source; a PROXY header that
/// claims it is counted under no rule, as a Unix peer). A key rather than
/// an `Option`, which would make every connection's task a word larger.
const NOT_COUNTED: Ipv6Addr = Ipv6Addr::UNSPECIFIED;

/// What an open connection holds: its place under the connection limits,
/// given back when dropped. Every connection's task holds one, so it is a
/// pointer and an address: the permit is the admission's to give back
/// rather than an `OwnedSemaphorePermit` with a second `Arc`.
pub(crate) struct Place {
    admission: Arc<Admission>,
    /// The key of the address counted under its cap, or [`NOT_COUNTED`].
    ip: Ipv6Addr,
}

impl Drop for Place {
    fn drop(&mut self) {
        // The address's share first: a connection that the freed permit
        // lets in finds its address's count without this one.
        if self.ip != NOT_COUNTED {
            self.admission.release_ip(self.ip);
        }
        self.admission.permits.add_permits(1);
    }
}

impl fmt::Debug for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Place").field("ip", &self.ip).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_connections: usize, per_ip: Option<usize>) -> Arc<Admission> {
        Admission::new(&Limits {
            max_connections,
            max_connections_per_ip: per_ip,
            reserved_for_others: Some(0),
            ..Limits::default()
        })
    }

    async fn admit(admission: &Arc<Admission>, ip: &str) -> Result<Place, Refusal> {
        let permit = admission.permit().await.expect("a permit is free");
        admission.admit(permit, Some(ip.parse().unwrap()))
    }

    #[tokio::test]
    async fn an_ipv4_address_and_its_mapped_form_share_one_cap() {
        let admission = admission(10, Some(1));
        let place = admit(&admission, "10.0.0.1").await.unwrap();
        assert_eq!(
            admit(&admission, "::ffff:10.0.0.1").await.unwrap_err(),
            Refusal::PerIpCap
        );
        assert!(admit(&admission, "10.0.0.2").await.is_ok());
        drop(place);
        assert!(admit(&admission, "::ffff:10.0.0.1").await.is_ok());
    }

    #[tokio::test]
    async fn a_dropped_place_gives_back_its_permit_and_its_address_share() {
        let admission = admission(1, Some(1));
        let place = admit(&admission, "10.0.0.1").await.unwrap();
        assert_eq!(admission.permits.available_permits(), 0);
        drop(place);
        assert_eq!(admission.permits.available_permits(), 1);
        assert!(sync::lock(&admission.per_ip).is_empty());
    }

    #[tokio::test]
    async fn a_refused_address_keeps_no_permit() {
        let admission = admission(2, Some(1));
        let _place = admit(&admission, "10.0.0.1").await.unwrap();
        assert!(admit(&admission, "10.0.0.1").await.is_err());
        assert_eq!(admission.permits.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_peer_without_an_address_is_counted_under_no_rule() {
        let admission = admission(2, Some(1));
        let permit = admission.permit().await.unwrap();
        let unix = admission.admit(permit, None).unwrap();
        let permit = admission.permit().await.unwrap();
        let _other = admission.admit(permit, None).unwrap();
        assert!(sync::lock(&admission.per_ip).is_empty());
        drop(unix);
        assert_eq!(admission.permits.available_permits(), 1);
    }

    /// Every connection's task holds its place: a pointer and an address
    /// (see the stream driver's `an_idle_connection_task_stays_small`).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_place_is_a_pointer_and_an_address() {
        assert_eq!(std::mem::size_of::<Place>(), 24);
    }
}
