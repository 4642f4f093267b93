//! A fault-injecting TCP proxy between custos peers: each member's Raft address in the
//! cluster's membership is a proxy listener that forwards bytes to the member's real peer
//! listener, and can blackhole, delay or drop the traffic of chosen links.
//!
//! Peers talk mutual TLS, so the proxy only forwards bytes; peer clients verify the server by
//! node id (`custos-node-<id>`), not by address, so a proxy on another port is transparent.
//!
//! All members reach member `j` at the same proxy address, so the proxy tells the sending
//! member apart by asking the kernel who owns the connecting socket: it finds the socket's
//! inode in `/proc/net/tcp` and the process holding it in `/proc/<pid>/fd` (Linux only; the
//! harness registers each node's pid). A link `i → j` carries `i`'s connections to `j`'s
//! listener, in both directions; a partition blocks both `i → j` and `j → i`.
//!
//! Faults per link:
//! - **blocked** (blackhole): bytes are read and thrown away, nothing is answered, new
//!   connections are accepted and never served. When the link heals, connections that lost
//!   bytes are closed, so peers reconnect on clean streams.
//! - **delay**: every chunk is delivered `delay ± jitter` milliseconds late, in order.
//! - **drop**: each chunk closes its connection with the given probability (a reset: in-flight
//!   RPCs fail and the peer reconnects).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The faults of one link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkFault {
    pub blocked: bool,
    pub delay_ms: u64,
    pub jitter_ms: u64,
    /// Probability per chunk, in thousandths, that the connection is reset.
    pub drop_per_mille: u32,
}

/// What the proxies did, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProxyStats {
    pub connections: u64,
    /// Connections whose sending member could not be identified (forwarded unfaulted).
    pub unidentified: u64,
    pub blackholed_bytes: u64,
    pub delayed_chunks: u64,
    pub dropped_connections: u64,
    pub healed_connections: u64,
}

#[derive(Default)]
struct Shared {
    /// Faults by (from, to); a link without an entry has `all`'s.
    links: Mutex<BTreeMap<(u64, u64), LinkFault>>,
    all: Mutex<LinkFault>,
    /// Node by pid, for identifying senders.
    pids: Mutex<BTreeMap<u32, u64>>,
    stats: Mutex<ProxyStats>,
    seed: AtomicU64,
}

impl Shared {
    fn link(&self, from: u64, to: u64) -> LinkFault {
        if from == 0 {
            // An unidentified sender is no member: never faulted.
            return LinkFault::default();
        }
        let specific = self
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(from, to))
            .copied();
        specific.unwrap_or_else(|| *self.all.lock().unwrap_or_else(|p| p.into_inner()))
    }
    fn stat(&self, f: impl FnOnce(&mut ProxyStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()))
    }
    /// A per-connection random stream (xorshift), seeded from the proxy's seed.
    fn rng(&self) -> u64 {
        let n = self
            .seed
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        n | 1
    }
}

fn next_random(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// The proxies of one cluster: one listener per member.
pub struct PeerProxies {
    shared: Arc<Shared>,
    /// (member, proxy address, real address).
    members: Vec<(u64, SocketAddr, SocketAddr)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl PeerProxies {
    /// Starts one proxy per `(member, real peer address)` on a free port of 127.0.0.1.
    pub async fn start(members: &[(u64, SocketAddr)], seed: u64) -> std::io::Result<PeerProxies> {
        let shared = Arc::new(Shared::default());
        shared.seed.store(seed | 1, Ordering::Relaxed);
        let mut out = PeerProxies {
            shared,
            members: Vec::new(),
            tasks: Vec::new(),
        };
        for &(id, real) in members {
            out.add(id, real).await?;
        }
        Ok(out)
    }

    /// Starts a proxy for one more member (one that joins later) and returns its address.
    pub async fn add(&mut self, id: u64, real: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        self.members.push((id, addr, real));
        let shared = self.shared.clone();
        self.tasks
            .push(tokio::spawn(accept_loop(listener, id, real, shared)));
        Ok(addr)
    }

    /// The proxy address that stands for `member`.
    pub fn addr(&self, member: u64) -> SocketAddr {
        self.members
            .iter()
            .find(|m| m.0 == member)
            .map(|m| m.1)
            .expect("a proxied member")
    }

    /// Registers the pid of a (re)started member, so its connections are recognised.
    pub fn set_pid(&self, pid: u32, member: u64) {
        let mut pids = self.shared.pids.lock().unwrap_or_else(|p| p.into_inner());
        pids.retain(|_, m| *m != member);
        pids.insert(pid, member);
    }

    /// Removes every fault.
    pub fn heal(&self) {
        self.shared
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        *self.shared.all.lock().unwrap_or_else(|p| p.into_inner()) = LinkFault::default();
    }

    /// Sets the fault of every link between members (links with a fault of their own keep
    /// it).
    pub fn set_all(&self, fault: LinkFault) {
        *self.shared.all.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    /// Blocks every link between members of different groups (members in no group keep
    /// their links).
    pub fn partition(&self, groups: &[Vec<u64>]) {
        let mut links = self.shared.links.lock().unwrap_or_else(|p| p.into_inner());
        for (i, ga) in groups.iter().enumerate() {
            for (j, gb) in groups.iter().enumerate() {
                if i == j {
                    continue;
                }
                for &a in ga {
                    for &b in gb {
                        if a != b {
                            links.entry((a, b)).or_default().blocked = true;
                        }
                    }
                }
            }
        }
    }

    /// Cuts `member` off from every other member.
    pub fn isolate(&self, member: u64) {
        let rest: Vec<u64> = self
            .members
            .iter()
            .map(|m| m.0)
            .filter(|m| *m != member)
            .collect();
        self.partition(&[vec![member], rest]);
    }

    pub fn stats(&self) -> ProxyStats {
        self.shared
            .stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for PeerProxies {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, to: u64, real: SocketAddr, shared: Arc<Shared>) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let Ok((sock, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let pids = shared
                .pids
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let from = tokio::task::spawn_blocking(move || identify(peer.port(), port, &pids))
                .await
                .ok()
                .flatten();
            shared.stat(|s| {
                s.connections += 1;
                if from.is_none() {
                    s.unidentified += 1;
                }
            });
            // An unidentified sender is forwarded without faults (it is no member).
            serve(sock, from.unwrap_or(0), to, real, shared).await;
        });
    }
}

/// Forwards one connection until either side closes or a fault ends it.
async fn serve(client: TcpStream, from: u64, to: u64, real: SocketAddr, shared: Arc<Shared>) {
    let _ = client.set_nodelay(true);
    if shared.link(from, to).blocked {
        // Accepted, never served: hold it (discarding what arrives) until the link heals.
        blackhole(client, from, to, &shared).await;
        return;
    }
    let Ok(Ok(server)) =
        tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(real)).await
    else {
        return;
    };
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let rng = shared.rng();
    let (tx_up, rx_up) = mpsc::unbounded_channel();
    let (tx_down, rx_down) = mpsc::unbounded_channel();
    tokio::select! {
        _ = pump_in(cr, tx_up, from, to, shared.clone(), rng) => {}
        _ = pump_out(rx_up, sw) => {}
        _ = pump_in(sr, tx_down, to, from, shared.clone(), rng.rotate_left(17)) => {}
        _ = pump_out(rx_down, cw) => {}
    }
}

async fn blackhole(mut client: TcpStream, from: u64, to: u64, shared: &Shared) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !shared.link(from, to).blocked {
            shared.stat(|s| s.healed_connections += 1);
            return;
        }
        match tokio::time::timeout(Duration::from_millis(100), client.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => shared.stat(|s| s.blackholed_bytes += n as u64),
            Err(_) => {}
        }
    }
}

/// Reads one direction (`from → to`) and queues chunks for delivery, applying the link's
/// faults. Returns when the connection must close.
async fn pump_in(
    mut r: tokio::net::tcp::OwnedReadHalf,
    tx: mpsc::UnboundedSender<(Instant, Vec<u8>)>,
    from: u64,
    to: u64,
    shared: Arc<Shared>,
    mut rng: u64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut lost_bytes = false;
    let mut last_delivery = Instant::now();
    loop {
        let read = tokio::time::timeout(Duration::from_millis(100), r.read(&mut buf)).await;
        let fault = shared.link(from, to);
        if lost_bytes && !fault.blocked {
            // The stream lost bytes while blocked: close it so the peers start clean.
            shared.stat(|s| s.healed_connections += 1);
            return;
        }
        let n = match read {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
        };
        if fault.blocked {
            lost_bytes = true;
            shared.stat(|s| s.blackholed_bytes += n as u64);
            continue;
        }
        if fault.drop_per_mille > 0 && next_random(&mut rng) % 1000 < fault.drop_per_mille as u64 {
            shared.stat(|s| s.dropped_connections += 1);
            return;
        }
        let mut at = Instant::now();
        if fault.delay_ms > 0 || fault.jitter_ms > 0 {
            let jitter = if fault.jitter_ms > 0 {
                next_random(&mut rng) % (2 * fault.jitter_ms + 1)
            } else {
                0
            };
            let ms = (fault.delay_ms + jitter).saturating_sub(fault.jitter_ms);
            at += Duration::from_millis(ms);
            shared.stat(|s| s.delayed_chunks += 1);
        }
        // Chunks stay in order whatever their jitter.
        at = at.max(last_delivery);
        last_delivery = at;
        if tx.send((at, buf[..n].to_vec())).is_err() {
            return;
        }
    }
}

async fn pump_out(
    mut rx: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
    mut w: tokio::net::tcp::OwnedWriteHalf,
) {
    while let Some((at, chunk)) = rx.recv().await {
        tokio::time::sleep_until(at.into()).await;
        if w.write_all(&chunk).await.is_err() {
            return;
        }
    }
}

/// The member whose process holds the local end `127.0.0.1:peer_port` of a connection to our
/// `127.0.0.1:local_port`, from `/proc`.
fn identify(peer_port: u16, local_port: u16, pids: &BTreeMap<u32, u64>) -> Option<u64> {
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let Some(inode) = socket_inode(peer_port, local_port) else {
            continue;
        };
        let needle = format!("socket:[{inode}]");
        for (pid, member) in pids {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                if std::fs::read_link(fd.path())
                    .is_ok_and(|l| l.to_string_lossy() == needle.as_str())
                {
                    return Some(*member);
                }
            }
        }
    }
    None
}

/// The inode of the TCP socket whose local port is `local` and remote port `remote`
/// (IPv4 loopback), from `/proc/net/tcp`.
fn socket_inode(local: u16, remote: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let want_local = format!(":{local:04X}");
    let want_remote = format!(":{remote:04X}");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && f[1].ends_with(&want_local) && f[2].ends_with(&want_remote))
            .then(|| f[9].parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server standing in for a member's peer listener.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, msg: &[u8], limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        s.write_all(msg).await.ok()?;
        let mut got = vec![0u8; msg.len()];
        match tokio::time::timeout(limit, s.read_exact(&mut got)).await {
            Ok(Ok(_)) if got == msg => Some(started.elapsed()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn the_proxy_identifies_this_process_and_applies_link_faults() {
        let real = echo().await;
        let proxies = PeerProxies::start(&[(2, real)], 7).await.unwrap();
        // This test process plays member 1.
        proxies.set_pid(std::process::id(), 1);
        let mut s = TcpStream::connect(proxies.addr(2)).await.unwrap();
        let fast = round_trip(&mut s, b"hello", Duration::from_secs(2)).await;
        assert!(fast.is_some(), "forwarded");
        assert_eq!(proxies.stats().unidentified, 0, "the sender was recognised");

        // Delay: the round trip takes at least the configured delay.
        proxies.set_all(LinkFault {
            delay_ms: 150,
            ..Default::default()
        });
        let slow = round_trip(&mut s, b"slow", Duration::from_secs(3)).await;
        assert!(
            slow.is_some_and(|d| d >= Duration::from_millis(150)),
            "{slow:?}"
        );

        // Blackhole: nothing comes back; after healing the lossy stream is closed and a new
        // connection works again.
        proxies.heal();
        proxies.partition(&[vec![1], vec![2]]);
        assert_eq!(
            round_trip(&mut s, b"lost", Duration::from_millis(500)).await,
            None
        );
        let mut blocked = TcpStream::connect(proxies.addr(2)).await.unwrap();
        assert_eq!(
            round_trip(&mut blocked, b"new", Duration::from_millis(500)).await,
            None
        );
        proxies.heal();
        let mut buf = [0u8; 8];
        let closed = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
        let mut again = TcpStream::connect(proxies.addr(2)).await.unwrap();
        assert!(round_trip(&mut again, b"back", Duration::from_secs(2))
            .await
            .is_some());

        // Drop: with certainty every chunk resets its connection.
        proxies.set_all(LinkFault {
            drop_per_mille: 1000,
            ..Default::default()
        });
        assert_eq!(
            round_trip(&mut again, b"x", Duration::from_secs(1)).await,
            None
        );
        assert!(proxies.stats().dropped_connections >= 1);
        assert!(proxies.stats().blackholed_bytes > 0);
    }

    #[tokio::test]
    async fn links_between_unlisted_members_stay_untouched() {
        let real = echo().await;
        let proxies = PeerProxies::start(&[(1, real), (2, real), (3, real)], 1)
            .await
            .unwrap();
        proxies.partition(&[vec![1], vec![2]]);
        assert!(proxies.shared.link(1, 2).blocked && proxies.shared.link(2, 1).blocked);
        assert!(!proxies.shared.link(1, 3).blocked && !proxies.shared.link(3, 2).blocked);
        proxies.heal();
        proxies.isolate(3);
        assert!(proxies.shared.link(3, 1).blocked && proxies.shared.link(2, 3).blocked);
        assert!(!proxies.shared.link(1, 2).blocked);
    }
}
