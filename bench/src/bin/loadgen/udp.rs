//! UDP mode: `--connections` sockets, each connected to the server and
//! keeping one datagram in flight (a datagram is a message).
//!
//! UDP may drop datagrams, so a missing reply cannot stall a socket: after
//! the loss timeout the datagram counts as lost and the next one goes out.
//! A reply that turns up after its timeout is recognised by its sequence
//! number and skipped; any other reply that is not the datagram in flight,
//! byte for byte, is an error. A socket that gets no reply to
//! [`GIVE_UP_AFTER`] datagrams in a row stops with an error (the server is
//! gone), so losses are bounded as well as counted.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flexi_socket_bench::Record;
use flexi_socket_bench::load::{Lines, LoadOptions, Phase, Stage, Tally, measure};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

/// Consecutive lost datagrams after which a socket gives up.
const GIVE_UP_AFTER: u32 = 10;

pub(crate) async fn load(options: &LoadOptions, loss_timeout: Duration) -> Result<Record, String> {
    if options.size <= 16 {
        return Err("--mode udp needs --size 17 or more (to tell late replies by their id)".into());
    }
    let mut sockets = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        sockets.push(open(options.addr).await?);
    }
    let phase = Phase::new(options.warmup);
    let mut drivers = JoinSet::new();
    for (id, socket) in sockets.into_iter().enumerate() {
        drivers.spawn(drive(
            socket,
            Lines::new(options.size, id),
            options.share(id),
            Arc::clone(&phase),
            loss_timeout,
        ));
    }
    let measured = measure(options, &phase, drivers).await?;
    let lost = measured.lost();
    Ok(Record {
        lost: Some(lost),
        ..measured.fill(options.record("udp", 1))
    })
}

/// A socket of its own, connected so that it hears only from the server
/// (and learns of an ICMP refusal when nothing listens there).
async fn open(server: SocketAddr) -> Result<UdpSocket, String> {
    let any = if server.is_ipv4() {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    };
    let socket = UdpSocket::bind(any)
        .await
        .map_err(|e| format!("bind {any}: {e}"))?;
    socket
        .connect(server)
        .await
        .map_err(|e| format!("connect {server}: {e}"))?;
    Ok(socket)
}

async fn drive(
    socket: UdpSocket,
    lines: Lines,
    share: Option<u64>,
    phase: Arc<Phase>,
    loss_timeout: Duration,
) -> Tally {
    let mut tally = Tally::default();
    if let Err(error) = exchange(&socket, &lines, share, &phase, loss_timeout, &mut tally).await {
        eprintln!("loadgen: socket {}: {error}", lines.connection());
        tally.errors += 1;
    }
    tally
}

async fn exchange(
    socket: &UdpSocket,
    lines: &Lines,
    share: Option<u64>,
    phase: &Phase,
    loss_timeout: Duration,
    tally: &mut Tally,
) -> Result<(), String> {
    let mut datagram = Vec::with_capacity(lines.len());
    // Room for any datagram, so a longer reply shows up whole, as a mismatch.
    let mut input = vec![0_u8; 64 * 1024];
    let mut silent = 0;
    let mut seq = 0_u64;
    while phase.get() != Stage::Stopping && share.is_none_or(|share| seq < share) {
        datagram.clear();
        lines.write(seq, &mut datagram);
        let sent = Instant::now();
        socket
            .send(&datagram)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let deadline = tokio::time::Instant::from_std(sent) + loss_timeout;
        loop {
            let Ok(received) = tokio::time::timeout_at(deadline, socket.recv(&mut input)).await
            else {
                tally.lost += 1;
                silent += 1;
                if silent >= GIVE_UP_AFTER {
                    return Err(format!(
                        "no reply to {silent} datagrams in a row ({loss_timeout:?} each)"
                    ));
                }
                break;
            };
            let length = received.map_err(|e| format!("receive: {e}"))?;
            let arrived = Instant::now();
            let reply = &input[..length];
            if reply == datagram.as_slice() {
                silent = 0;
                if phase.get() == Stage::Measuring {
                    tally.reply(sent, arrived);
                }
                break;
            }
            if lines.seq_of(reply).is_some_and(|earlier| earlier < seq) {
                // The reply to a datagram already counted as lost.
                continue;
            }
            return Err(format!(
                "reply {seq} differs: sent {:?}, got {:?}",
                String::from_utf8_lossy(&datagram),
                String::from_utf8_lossy(reply)
            ));
        }
        seq += 1;
    }
    Ok(())
}
