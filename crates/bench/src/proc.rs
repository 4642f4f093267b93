//! CPU accounting from `/proc`: CPU seconds (user + system) of given processes and of the whole
//! machine, an idle gate that waits (bounded) for a quiet machine before a run, a process's
//! resident memory, and which of given processes listens on a TCP port.

use std::time::{Duration, Instant};

/// Clock ticks per second of the `/proc` time fields (`USER_HZ`).
fn ticks_per_second() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// utime + stime of process `pid`, in seconds (`/proc/<pid>/stat` fields 14 and 15).
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu(&text).map(|ticks| ticks as f64 / ticks_per_second())
}

/// The CPU seconds of this process.
pub fn own_cpu_seconds() -> Option<f64> {
    process_cpu_seconds(std::process::id())
}

/// utime + stime in ticks from the text of a `/proc/<pid>/stat`. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat_cpu(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Busy and total CPU seconds of the whole machine since boot (`/proc/stat`, line `cpu`).
pub fn machine_cpu_seconds() -> Option<(f64, f64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let (busy, total) = parse_machine(&text)?;
    let hz = ticks_per_second();
    Some((busy as f64 / hz, total as f64 / hz))
}

/// (busy, total) ticks of the aggregate `cpu` line; idle and iowait count as not busy.
fn parse_machine(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    Some((total - idle, total))
}

/// What the idle gate saw.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct IdleGate {
    /// Machine busy share (0–100 %) over the last one-second sample before the run.
    pub busy_pct: f64,
    /// Seconds spent waiting for the machine to become quiet.
    pub waited_s: f64,
    /// Whether the machine got below the threshold before the wait ran out.
    pub passed: bool,
}

/// Samples the machine's busy share once a second until it is below `max_busy_pct` or
/// `max_wait` has passed.
pub async fn wait_for_idle(max_busy_pct: f64, max_wait: Duration) -> IdleGate {
    let start = Instant::now();
    loop {
        let before = machine_cpu_seconds();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy_pct = match (before, machine_cpu_seconds()) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => 100.0 * (b1 - b0) / (t1 - t0),
            _ => 0.0,
        };
        let passed = busy_pct < max_busy_pct;
        if passed || start.elapsed() >= max_wait {
            return IdleGate {
                busy_pct,
                waited_s: start.elapsed().as_secs_f64(),
                passed,
            };
        }
    }
}

/// Resident memory of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_rss_kib(&text)
}

fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The inodes of the TCP sockets listening on `port` (any address), from the text of
/// `/proc/net/tcp` or `/proc/net/tcp6`: `local_address` is `HEXADDR:HEXPORT`, state `0A` is
/// LISTEN, the inode is field 10.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit_once(':')?.1, 16).ok()?;
            (local_port == port && *f.get(3)? == "0A")
                .then(|| f.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

/// Which of `pids` holds a socket listening on TCP `port`: a member's process found by its
/// SDK address, to read its memory. None when no such process is found (or `/proc` is not
/// readable).
pub fn listening_pid(pids: &[u32], port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    pids.iter().copied().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .any(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let text = "4242 (cus tos) (x)) S 1 2 3 4 5 6 7 8 9 10 120 30 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat_cpu(text), Some(150));
    }

    #[test]
    fn machine_busy_excludes_idle_and_iowait() {
        let text = "cpu  100 5 50 1000 20 1 2 0 0 0\ncpu0 1 1 1 1 1 1 1 1\n";
        assert_eq!(parse_machine(text), Some((158, 1178)));
    }

    #[test]
    fn rss_is_read_from_the_vmrss_line() {
        let text = "Name:\tcustos\nVmPeak:\t  900 kB\nVmRSS:\t  123456 kB\nThreads:\t9\n";
        assert_eq!(parse_rss_kib(text), Some(123456));
        assert_eq!(parse_rss_kib("Name:\tkthreadd\n"), None);
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn listening_sockets_are_found_by_port_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:5208 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0\n   1: 0100007F:5208 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0\n   2: 0100007F:5209 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0\n";
        // Port 0x5208 = 21000: the listener, not the established connection on the same port.
        assert_eq!(listening_inodes(table, 21000), vec![4242]);
        assert_eq!(listening_inodes(table, 21001), vec![4444]);
        assert!(listening_inodes(table, 21002).is_empty());
    }

    #[test]
    fn the_process_listening_on_a_port_is_found_among_the_given_ones() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let me = std::process::id();
        assert_eq!(listening_pid(&[u32::MAX, me], port), Some(me));
        drop(listener);
        assert_eq!(listening_pid(&[me], port), None);
    }

    #[test]
    fn this_process_has_cpu_time() {
        assert!(own_cpu_seconds().is_some());
        assert!(machine_cpu_seconds().is_some());
    }
}
