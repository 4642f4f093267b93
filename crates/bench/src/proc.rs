//! CPU accounting from `/proc`: CPU seconds (user + system) of given processes and of the whole
//! machine, and an idle gate that waits (bounded) for a quiet machine before a run.

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
    fn this_process_has_cpu_time() {
        assert!(own_cpu_seconds().is_some());
        assert!(machine_cpu_seconds().is_some());
    }
}
