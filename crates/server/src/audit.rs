//! A node's audit and access logs: local logfmt files in upstream's format, edge denials batched
//! (and coalesced) into the replicated trail, and local lines for replicated records taken here.
//!
//! What goes where:
//! - **Edge denials** (authentication failures, role refusals before proposing, permission
//!   refusals of reads) are written to `audit.log` at once and kept in a bounded, coalescing
//!   buffer that a background task proposes as one `RecordDenials` command every
//!   `[audit] batch_ms`. A batch keeps its request id until it is acknowledged, so a retried
//!   proposal is applied once and the counts add up exactly.
//! - **Mutations** are audited by apply on every member. This node writes the upstream lines
//!   of the records whose origin it is (`Volume X created`, then `Authorized`) when they apply.
//! - **Successful reads** are logged here only (`Authorized`), never replicated.
//! - **access.log** has `Start` and `Successful` / `Failed: ...` lines with `duration` for every
//!   call that passed authentication and the role check, as upstream's access logger.
//!
//! Both files are opened for append and reopened on SIGHUP (for logrotate).

use crate::config::AuditSettings;
use custos_model::audit::{AuditActor, AuditRecord, Denial, AUTHENTICATION_METHOD, CODE_OK};
use custos_model::{Identity, MethodName, RequestId};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

/// Longest text (message, username...) a denial keeps; callers control these strings (an
/// untrusted issuer's name is echoed in its refusal), so they are cut to bound memory.
const MAX_FIELD: usize = 256;

pub const AUDIT_FILE: &str = "audit.log";
pub const ACCESS_FILE: &str = "access.log";

/// The two local log files. Lines are written through `&File` under the read side of a lock
/// (append mode makes each line's `write` land whole at the end), so calls on different threads
/// do not queue behind each other's syscalls; only a reopen takes the write side.
struct Files {
    dir: PathBuf,
    audit: File,
    access: File,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Files {
    fn open(dir: &Path) -> std::io::Result<Files> {
        std::fs::create_dir_all(dir)?;
        Ok(Files {
            dir: dir.to_path_buf(),
            audit: open_append(&dir.join(AUDIT_FILE))?,
            access: open_append(&dir.join(ACCESS_FILE))?,
        })
    }
}

/// The coalescing key of a denial: everything but its count, first request id and token
/// fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct DenialKey {
    message: String,
    actor: AuditActor,
    method: String,
    objects: Vec<String>,
    code: String,
}

/// Denials seen since the last batch, coalesced, bounded.
#[derive(Default)]
struct DenialBuffer {
    pending: HashMap<DenialKey, Denial>,
    /// Denials of new kinds once `pending` is full, one entry per code.
    overflow: HashMap<String, Denial>,
    /// The batch being proposed, with its request id, until it is acknowledged.
    in_flight: Option<(RequestId, Vec<Denial>)>,
}

/// Counters of what this node's audit did (for tests and, later, metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditCounters {
    /// Denials seen at the edge.
    pub denials: u64,
    /// Denials acknowledged in the replicated trail.
    pub denials_recorded: u64,
    /// Batches acknowledged.
    pub batches: u64,
}

/// The audit side of one node.
pub struct Audit {
    node_id: u64,
    settings: AuditSettings,
    files: RwLock<Files>,
    denials: Mutex<DenialBuffer>,
    counters: Mutex<AuditCounters>,
    /// The replicated trail on this node's store.
    pub log: custos_store::AuditLog,
}

/// Cuts a caller-controlled string to [`MAX_FIELD`] bytes (at a character boundary).
fn bounded(s: &str) -> String {
    if s.len() <= MAX_FIELD {
        return s.to_string();
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

fn bounded_actor(a: AuditActor) -> AuditActor {
    AuditActor {
        username: bounded(&a.username),
        subject: bounded(&a.subject),
        name: bounded(&a.name),
        email: bounded(&a.email),
        issuer: bounded(&a.issuer),
        roles: a.roles.iter().take(16).map(|r| bounded(r)).collect(),
        groups: a.groups.iter().take(16).map(|g| bounded(g)).collect(),
    }
}

impl Audit {
    /// Opens (creating) the node's log files in `settings.log_dir`.
    pub fn open(
        node_id: u64,
        settings: AuditSettings,
        log_dir: &Path,
        log: custos_store::AuditLog,
    ) -> std::io::Result<Audit> {
        Ok(Audit {
            node_id,
            settings,
            files: RwLock::new(Files::open(log_dir)?),
            denials: Mutex::new(DenialBuffer::default()),
            counters: Mutex::new(AuditCounters::default()),
            log,
        })
    }

    pub fn settings(&self) -> &AuditSettings {
        &self.settings
    }

    pub fn counters(&self) -> AuditCounters {
        *self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reopens both files by name (after logrotate moved them).
    pub fn reopen(&self) -> std::io::Result<()> {
        let mut files = self.files.write().unwrap_or_else(|p| p.into_inner());
        let dir = files.dir.clone();
        *files = Files::open(&dir)?;
        Ok(())
    }

    fn write_audit(&self, line: &str) {
        let files = self.files.read().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = (&files.audit).write_all(line.as_bytes()) {
            tracing::error!(node = self.node_id, "writing {AUDIT_FILE}: {e}");
        }
    }

    fn write_access(&self, line: &str) {
        let files = self.files.read().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = (&files.access).write_all(line.as_bytes()) {
            tracing::error!(node = self.node_id, "writing {ACCESS_FILE}: {e}");
        }
    }

    // ---- edge denials ----

    /// An authentication failure: written at once, and queued for the replicated trail.
    /// Failures coalesce by `reason` (the authenticator's fixed label), not by message: the
    /// message of an untrusted issuer names the issuer the caller chose, so a flood of invented
    /// issuers must not become one replicated record each. The record keeps the first message.
    pub fn authentication_failed(
        &self,
        message: &str,
        code: &str,
        reason: &str,
        fingerprint: &str,
        request_id: &str,
    ) {
        let message = bounded(message);
        let mut fields = vec![
            ("method", AUTHENTICATION_METHOD.to_string()),
            ("code", code.to_string()),
            ("correlation-id", request_id.to_string()),
            ("origin", "sdk-server".to_string()),
        ];
        if !fingerprint.is_empty() {
            fields.push(("token", fingerprint.to_string()));
        }
        self.write_audit(&logfmt_line(
            crate::node::now_ms(),
            "warning",
            &message,
            fields,
        ));
        self.queue_denial(
            reason,
            Denial {
                message,
                actor: AuditActor::default(),
                method: AUTHENTICATION_METHOD.to_string(),
                objects: Vec::new(),
                code: code.to_string(),
                request_id: bounded(request_id),
                fingerprint: fingerprint.to_string(),
                count: 1,
            },
        );
    }

    /// A refusal of an authenticated (or guest) caller at this node: the role check
    /// (`Access denied`), or a read's permission refusal (`Access denied: <status text>`).
    pub fn denied(
        &self,
        who: &Identity,
        method: &MethodName,
        message: &str,
        objects: Vec<String>,
        request_id: &str,
    ) {
        let mut fields = user_fields(&AuditActor::from(who), &method.dotted());
        fields.push(("code", "PermissionDenied".to_string()));
        fields.push(("correlation-id", request_id.to_string()));
        fields.push(("origin", "sdk-server".to_string()));
        self.write_audit(&logfmt_line(
            crate::node::now_ms(),
            "warning",
            message,
            fields,
        ));
        let message = bounded(message);
        self.queue_denial(
            &message.clone(),
            Denial {
                message,
                actor: bounded_actor(AuditActor::from(who)),
                method: method.dotted(),
                objects: objects.iter().take(4).map(|o| bounded(o)).collect(),
                code: "PermissionDenied".to_string(),
                request_id: bounded(request_id),
                fingerprint: who.fingerprint.clone(),
                count: 1,
            },
        );
    }

    /// Queues a denial; those with the same `kind` (the message, or an authentication
    /// failure's reason), actor, method, objects and code coalesce.
    fn queue_denial(&self, kind: &str, denial: Denial) {
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .denials += 1;
        let mut buf = self.denials.lock().unwrap_or_else(|p| p.into_inner());
        let key = DenialKey {
            message: kind.to_string(),
            actor: denial.actor.clone(),
            method: denial.method.clone(),
            objects: denial.objects.clone(),
            code: denial.code.clone(),
        };
        if let Some(d) = buf.pending.get_mut(&key) {
            d.count += 1;
            return;
        }
        if buf.pending.len() < self.settings.max_distinct_denials {
            buf.pending.insert(key, denial);
            return;
        }
        let code = denial.code.clone();
        buf.overflow
            .entry(code.clone())
            .and_modify(|d| d.count += 1)
            .or_insert_with(|| Denial {
                message: format!(
                    "Denials of more than {} kinds within one batch, coalesced",
                    self.settings.max_distinct_denials
                ),
                actor: AuditActor::default(),
                method: "*".to_string(),
                objects: Vec::new(),
                code,
                request_id: denial.request_id,
                fingerprint: String::new(),
                count: 1,
            });
    }

    /// The batch to propose now: the one in flight (same request id, so a retry applies
    /// once), else the pending denials, else nothing.
    pub fn next_batch(&self) -> Option<(RequestId, Vec<Denial>)> {
        let mut buf = self.denials.lock().unwrap_or_else(|p| p.into_inner());
        if buf.in_flight.is_none() && !(buf.pending.is_empty() && buf.overflow.is_empty()) {
            let mut denials: Vec<Denial> = buf.pending.drain().map(|(_, d)| d).collect();
            denials.extend(buf.overflow.drain().map(|(_, d)| d));
            // A stable order, so the records of one batch read the same on every replay.
            denials.sort_by(|a, b| {
                (&a.method, &a.message, &a.actor.username).cmp(&(
                    &b.method,
                    &b.message,
                    &b.actor.username,
                ))
            });
            let id = RequestId(format!("denials/{}/{}", self.node_id, uuid::Uuid::new_v4()));
            buf.in_flight = Some((id, denials));
        }
        buf.in_flight.clone()
    }

    /// The batch `id` is in the replicated trail.
    pub fn batch_recorded(&self, id: &RequestId) {
        let mut buf = self.denials.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((in_flight, denials)) = &buf.in_flight {
            if in_flight == id {
                let n: u64 = denials.iter().map(|d| d.count).sum();
                let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
                c.denials_recorded += n;
                c.batches += 1;
                buf.in_flight = None;
            }
        }
    }

    /// Denials not yet acknowledged (pending plus in flight).
    pub fn backlog(&self) -> u64 {
        let buf = self.denials.lock().unwrap_or_else(|p| p.into_inner());
        let pending: u64 = buf
            .pending
            .values()
            .chain(buf.overflow.values())
            .map(|d| d.count)
            .sum();
        let in_flight: u64 = buf
            .in_flight
            .iter()
            .flat_map(|(_, d)| d)
            .map(|d| d.count)
            .sum();
        pending + in_flight
    }

    // ---- served calls ----

    /// A call passed authentication and the role check: the access log's `Start`.
    pub fn call_started(&self, full_method: &str, request_id: &str) {
        self.write_access(&logfmt_line(
            crate::node::now_ms(),
            "info",
            "Start",
            vec![
                ("method", full_method.to_string()),
                ("reqid", request_id.to_string()),
                ("correlation-id", request_id.to_string()),
                ("origin", "sdk-server".to_string()),
            ],
        ));
    }

    /// A call that passed the edge ended with `code` (0 = OK) and `message`.
    pub fn call_finished(
        &self,
        call: &crate::access::CallInfo,
        code: i32,
        message: &str,
        elapsed: Duration,
    ) {
        let status = if code == 0 {
            "Successful".to_string()
        } else {
            format!(
                "Failed: rpc error: code = {} desc = {message}",
                code_name(code)
            )
        };
        self.write_access(&logfmt_line(
            crate::node::now_ms(),
            "info",
            &status,
            vec![
                ("method", call.method.full.clone()),
                ("reqid", call.request_id.clone()),
                ("correlation-id", call.request_id.clone()),
                ("origin", "sdk-server".to_string()),
                ("duration", go_duration(elapsed)),
            ],
        ));
        if call.wrote {
            // Apply audits it; the lines come with the replicated record.
            return;
        }
        const PERMISSION_DENIED: i32 = 7;
        if code == PERMISSION_DENIED {
            let msg = custos_model::audit::access_denied_message(&custos_model::Rejection::denied(
                message,
            ));
            self.denied(
                &call.identity,
                &call.method,
                &msg,
                Vec::new(),
                &call.request_id,
            );
        } else {
            let mut fields = user_fields(&AuditActor::from(&call.identity), &call.method.dotted());
            fields.push(("correlation-id", call.request_id.clone()));
            fields.push(("origin", "sdk-server".to_string()));
            self.write_audit(&logfmt_line(
                crate::node::now_ms(),
                "info",
                "Authorized",
                fields,
            ));
        }
    }

    /// Writes the upstream lines of a replicated record this node took (or proposed).
    pub fn write_record(&self, r: &AuditRecord) {
        let mut fields = user_fields(&r.actor, &r.method);
        fields.push(("seq", r.seq.to_string()));
        fields.push(("node", r.origin.to_string()));
        if !r.objects.is_empty() {
            fields.push(("objects", format!("[{}]", r.objects.join(" "))));
        }
        if r.code == CODE_OK {
            // Upstream: the handler's event line, then the interceptor's `Authorized`.
            self.write_audit(&logfmt_line(
                r.time_ms,
                r.level.name(),
                &r.message,
                fields.clone(),
            ));
            if r.authorized {
                fields.push(("correlation-id", r.request_id.clone()));
                fields.push(("origin", "sdk-server".to_string()));
                self.write_audit(&logfmt_line(r.time_ms, "info", "Authorized", fields));
            }
        } else {
            fields.push(("code", r.code.clone()));
            fields.push(("correlation-id", r.request_id.clone()));
            fields.push(("origin", "sdk-server".to_string()));
            if !r.reason.is_empty() && r.message == "Authorized" {
                fields.push(("error", r.reason.clone()));
            }
            self.write_audit(&logfmt_line(r.time_ms, r.level.name(), &r.message, fields));
        }
    }
}

/// gRPC code names as Go's `codes.Code.String()` spells them.
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

/// Upstream's user fields: `username subject name email roles groups method`.
fn user_fields(a: &AuditActor, method: &str) -> Vec<(&'static str, String)> {
    vec![
        ("username", a.username.clone()),
        ("subject", a.subject.clone()),
        ("name", a.name.clone()),
        ("email", a.email.clone()),
        ("roles", format!("[{}]", a.roles.join(" "))),
        ("groups", format!("[{}]", a.groups.join(" "))),
        ("method", method.to_string()),
    ]
}

/// A Go-style duration (`1.234ms`), as logrus prints `time.Duration` fields.
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.3}µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.3}ms", ns as f64 / 1e6)
    } else {
        format!("{:.3}s", ns as f64 / 1e9)
    }
}

/// One logrus text-formatter line: `time="..." level=... msg=...` then the fields sorted by key.
pub fn logfmt_line(
    time_ms: u64,
    level: &str,
    msg: &str,
    mut fields: Vec<(&'static str, String)>,
) -> String {
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::with_capacity(128);
    out.push_str("time=");
    push_time(&mut out, time_ms);
    out.push_str(" level=");
    out.push_str(level);
    out.push_str(" msg=");
    push_value(&mut out, msg);
    for (k, v) in fields {
        out.push(' ');
        out.push_str(k);
        out.push('=');
        push_value(&mut out, &v);
    }
    out.push('\n');
    out
}

/// logrus quotes a value unless every character is in `[A-Za-z0-9-._/@^+]`; the quoted form
/// escapes `"` and `\` and shows control characters as escapes, so one event is one line.
fn push_value(out: &mut String, v: &str) {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/@^+".contains(c));
    if plain {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `push_value(out, &rfc3339(ms))` (always quoted: the time has colons), with the date and time
/// of day formatted once per second per thread: every line of a busy node starts with one.
fn push_time(out: &mut String, ms: u64) {
    thread_local! {
        /// The second last formatted on this thread and its text up to the seconds.
        static SECOND: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let secs = ms / 1000;
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let mut text = rfc3339(secs * 1000);
            text.truncate(text.len() - ".000Z".len());
            *cached = (secs, text);
        }
        let millis = ms % 1000;
        out.push('"');
        out.push_str(&cached.1);
        out.push('.');
        for digit in [millis / 100, millis / 10 % 10, millis % 10] {
            out.push(char::from(b'0' + digit as u8));
        }
        out.push_str("Z\"");
    });
}

/// RFC 3339 in UTC with milliseconds, from milliseconds since the Unix epoch.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_time_prefix_is_the_quoted_rfc3339_time() {
        // Same second twice (the cache), the next second, a second going back, and edges.
        for ms in [
            1_700_000_000_123,
            1_700_000_000_999,
            1_700_000_001_000,
            1_700_000_000_005,
            0,
            951_782_400_000,
            4_102_444_799_999,
        ] {
            let (mut cached, mut plain) = (String::new(), String::new());
            push_time(&mut cached, ms);
            push_value(&mut plain, &rfc3339(ms));
            assert_eq!(cached, plain, "{ms}");
        }
    }

    #[test]
    fn lines_are_logrus_text_with_sorted_quoted_fields() {
        let line = logfmt_line(
            1_700_000_000_123,
            "warning",
            "Access denied",
            vec![
                ("username", "victor".into()),
                ("roles", "[system.view]".into()),
                ("method", "volume.create".into()),
                ("subject", "".into()),
                ("email", "victor@x".into()),
            ],
        );
        assert_eq!(
            line,
            "time=\"2023-11-14T22:13:20.123Z\" level=warning msg=\"Access denied\" \
             email=victor@x method=volume.create roles=\"[system.view]\" subject=\"\" \
             username=victor\n"
        );
    }

    #[test]
    fn hostile_values_stay_on_one_line() {
        let line = logfmt_line(0, "info", "a\"b\nc\\d\u{7}", vec![]);
        assert_eq!(
            line,
            "time=\"1970-01-01T00:00:00.000Z\" level=info msg=\"a\\\"b\\nc\\\\d\\u0007\"\n"
        );
        assert_eq!(line.matches('\n').count(), 1);
    }

    #[test]
    fn dates_and_durations() {
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
        assert_eq!(go_duration(Duration::from_nanos(999)), "999ns");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.500ms");
        assert_eq!(go_duration(Duration::from_millis(2500)), "2.500s");
    }

    #[test]
    fn bounded_cuts_at_a_char_boundary() {
        let long = "é".repeat(MAX_FIELD);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_FIELD + 3);
        assert!(cut.ends_with("..."));
    }
}
