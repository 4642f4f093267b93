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
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest text (message, username...) a denial keeps; callers control these strings (an
/// untrusted issuer's name is echoed in its refusal), so they are cut to bound memory and the
/// replicated records made of them.
const MAX_FIELD: usize = crate::bounds::MAX_LOGGED_FIELD;

pub const AUDIT_FILE: &str = "audit.log";
pub const ACCESS_FILE: &str = "access.log";

/// Bytes a local log file buffers before it is written out without waiting for the flusher.
const LOG_BUFFER_LIMIT: usize = 64 * 1024;

/// One local log file and the lines not yet written to it. Lines are appended to the buffer
/// under the mutex and written out (in order, under the same mutex) by the flusher every
/// `[audit] log_flush_ms`, when the buffer passes [`LOG_BUFFER_LIMIT`], on reopen and on
/// shutdown; with `log_flush_ms = 0` every line is written at once.
struct Sink {
    /// The file's name in the log directory.
    name: &'static str,
    /// Where the file lives, and the size at which it is rotated to `<name>.1` (0: never).
    path: PathBuf,
    max_bytes: u64,
    file: File,
    /// Bytes in the file now (as far as this process wrote it).
    written: u64,
    buf: Vec<u8>,
}

impl Sink {
    fn open(dir: &Path, name: &'static str, max_bytes: u64) -> std::io::Result<Sink> {
        let path = dir.join(name);
        let file = open_append(&path)?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Sink {
            name,
            path,
            max_bytes,
            file,
            written,
            buf: Vec::new(),
        })
    }

    /// Writes the buffer out; a failed write is logged and its lines dropped (the replicated
    /// trail is the record, these files are for log shippers). A file that reached
    /// `max_bytes` is then rotated.
    fn write_out(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if let Err(e) = self.file.write_all(&self.buf) {
            tracing::error!("writing {}: {e}", self.name);
        }
        self.written += self.buf.len() as u64;
        self.buf.clear();
        if self.max_bytes != 0 && self.written >= self.max_bytes {
            self.rotate();
        }
    }

    /// Moves the file to `<name>.1` (replacing the previous one) and starts a new one.
    fn rotate(&mut self) {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        let moved = std::fs::rename(&self.path, &old).and_then(|()| open_append(&self.path));
        match moved {
            Ok(file) => {
                self.file = file;
                self.written = 0;
                tracing::info!(
                    "{} reached {} bytes: rotated to {}.1",
                    self.name,
                    self.max_bytes,
                    self.name
                );
            }
            Err(e) => tracing::error!("rotating {}: {e}", self.name),
        }
    }
}

/// The two local log files.
struct Files {
    dir: PathBuf,
    /// Lines buffered at most this long (0: written at once).
    flush_ms: u64,
    audit: Mutex<Sink>,
    access: Mutex<Sink>,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn lock(sink: &Mutex<Sink>) -> std::sync::MutexGuard<'_, Sink> {
    sink.lock().unwrap_or_else(|p| p.into_inner())
}

impl Files {
    fn open(dir: &Path, flush_ms: u64, max_bytes: u64) -> std::io::Result<Files> {
        std::fs::create_dir_all(dir)?;
        let sink = |name: &'static str| -> std::io::Result<Mutex<Sink>> {
            Ok(Mutex::new(Sink::open(dir, name, max_bytes)?))
        };
        Ok(Files {
            dir: dir.to_path_buf(),
            flush_ms,
            audit: sink(AUDIT_FILE)?,
            access: sink(ACCESS_FILE)?,
        })
    }

    fn write(&self, sink: &Mutex<Sink>, line: &str) {
        let mut sink = lock(sink);
        sink.buf.extend_from_slice(line.as_bytes());
        if self.flush_ms == 0 || sink.buf.len() >= LOG_BUFFER_LIMIT {
            sink.write_out();
        }
    }

    /// Writes out both buffers.
    fn flush(&self) {
        for sink in [&self.audit, &self.access] {
            lock(sink).write_out();
        }
    }

    /// Writes out both buffers to the files they were meant for, then opens the files by name
    /// again (after logrotate moved them).
    fn reopen(&self) -> std::io::Result<()> {
        for sink in [&self.audit, &self.access] {
            let mut sink = lock(sink);
            sink.write_out();
            sink.file = open_append(&self.dir.join(sink.name))?;
            sink.written = sink.file.metadata().map(|m| m.len()).unwrap_or(0);
        }
        Ok(())
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Writes the buffered lines out every `flush_ms` until the files are dropped.
fn spawn_flusher(files: &Arc<Files>) {
    if files.flush_ms == 0 {
        return;
    }
    let period = Duration::from_millis(files.flush_ms);
    let files = Arc::downgrade(files);
    let spawned = std::thread::Builder::new()
        .name("audit-log flush".into())
        .spawn(move || loop {
            std::thread::sleep(period);
            match files.upgrade() {
                Some(files) => files.flush(),
                None => return,
            }
        });
    if let Err(e) = spawned {
        tracing::error!("starting the audit and access log flusher: {e}");
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
    files: Arc<Files>,
    denials: Mutex<DenialBuffer>,
    counters: Mutex<AuditCounters>,
    /// The replicated trail on this node's store.
    pub log: custos_store::AuditLog,
}

/// Cuts a caller-controlled string to [`MAX_FIELD`] bytes (see [`crate::bounds::cap`]).
fn bounded(s: &str) -> String {
    crate::bounds::cap(s, MAX_FIELD).into_owned()
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
        let files = Arc::new(Files::open(
            log_dir,
            settings.log_flush_ms,
            settings.max_log_file_bytes,
        )?);
        spawn_flusher(&files);
        Ok(Audit {
            node_id,
            settings,
            files,
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

    /// Reopens both files by name (after logrotate moved them); buffered lines go to the old
    /// files first.
    pub fn reopen(&self) -> std::io::Result<()> {
        self.files.reopen()
    }

    /// Writes out the buffered lines now (at shutdown).
    pub fn flush_files(&self) {
        self.files.flush();
    }

    fn write_audit(&self, line: &str) {
        self.files.write(&self.files.audit, line);
    }

    fn write_access(&self, line: &str) {
        self.files.write(&self.files.access, line);
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
        let line = Line::new(crate::node::now_ms(), "info", "Start")
            .field("correlation-id", request_id)
            .field("method", full_method)
            .field("origin", "sdk-server")
            .field("reqid", request_id)
            .finish();
        self.write_access(&line);
    }

    /// A call that passed the edge ended with `code` (0 = OK) and `message`.
    pub fn call_finished(
        &self,
        call: &crate::access::CallInfo,
        code: i32,
        message: &str,
        elapsed: Duration,
    ) {
        let failed;
        let status = if code == 0 {
            "Successful"
        } else {
            failed = format!(
                "Failed: rpc error: code = {} desc = {message}",
                code_name(code)
            );
            &failed
        };
        let now = crate::node::now_ms();
        let line = Line::new(now, "info", status)
            .field("correlation-id", &call.request_id)
            .duration("duration", elapsed)
            .field("method", &call.method.full)
            .field("origin", "sdk-server")
            .field("reqid", &call.request_id)
            .finish();
        self.write_access(&line);
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
            // `user_fields` plus the correlation id and origin, in key order.
            let who = &call.identity;
            let line = Line::new(now, "info", "Authorized")
                .field("correlation-id", &call.request_id)
                .field("email", &who.email)
                .list("groups", &who.groups)
                .field("method", &call.method.dotted())
                .field("name", &who.name)
                .field("origin", "sdk-server")
                .list("roles", &who.roles)
                .field("subject", &who.subject)
                .field("username", &who.username)
                .finish();
            self.write_audit(&line);
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

/// A Go-style duration (`1.234ms`), as logrus prints `time.Duration` fields: three decimals,
/// rounded half up (integer arithmetic; this runs for every call).
pub fn go_duration(d: Duration) -> String {
    let mut out = String::with_capacity(12);
    push_duration(&mut out, d);
    out
}

fn push_duration(out: &mut String, d: Duration) {
    use std::fmt::Write as _;
    let ns = d.as_nanos();
    let (unit, per) = match ns {
        0..=999 => {
            let _ = write!(out, "{ns}ns");
            return;
        }
        1_000..=999_999 => ("µs", 1_000u128),
        1_000_000..=999_999_999 => ("ms", 1_000_000),
        _ => ("s", 1_000_000_000),
    };
    // Thousandths of the unit, rounded half up.
    let milli = (ns * 1000 + per / 2) / per;
    let _ = write!(out, "{}.{:03}{unit}", milli / 1000, milli % 1000);
}

/// A logrus text line built in place: `time="..." level=... msg=...`, then fields, which the
/// caller adds in key order (logrus sorts them; debug builds check).
///
/// Every line of `audit.log` and `access.log` is built here, and here every value is capped
/// (`crate::bounds::cap`): the message at [`crate::bounds::MAX_LOGGED_MESSAGE`] bytes, each
/// field and list item at [`crate::bounds::MAX_LOGGED_FIELD`], so no request field, however
/// long, makes a long line.
struct Line {
    out: String,
    #[cfg(debug_assertions)]
    last_key: &'static str,
}

impl Line {
    fn new(time_ms: u64, level: &str, msg: &str) -> Line {
        let mut out = String::with_capacity(256);
        out.push_str("time=");
        push_time(&mut out, time_ms);
        out.push_str(" level=");
        out.push_str(level);
        out.push_str(" msg=");
        push_value(&mut out, msg, crate::bounds::MAX_LOGGED_MESSAGE);
        Line {
            out,
            #[cfg(debug_assertions)]
            last_key: "",
        }
    }

    fn key(&mut self, key: &'static str) {
        #[cfg(debug_assertions)]
        {
            assert!(
                self.last_key <= key,
                "fields out of order: {key} after {}",
                self.last_key
            );
            self.last_key = key;
        }
        self.out.push(' ');
        self.out.push_str(key);
        self.out.push('=');
    }

    fn field(mut self, key: &'static str, value: &str) -> Line {
        self.key(key);
        push_value(&mut self.out, value, crate::bounds::MAX_LOGGED_FIELD);
        self
    }

    /// A list as `"[a b]"` (always quoted: brackets are not plain characters).
    fn list(mut self, key: &'static str, items: &[String]) -> Line {
        self.key(key);
        self.out.push_str("\"[");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(' ');
            }
            push_escaped(
                &mut self.out,
                &crate::bounds::cap(item, crate::bounds::MAX_LOGGED_FIELD),
            );
        }
        self.out.push_str("]\"");
        self
    }

    fn duration(mut self, key: &'static str, d: Duration) -> Line {
        self.key(key);
        let start = self.out.len();
        push_duration(&mut self.out, d);
        // `µ` is not a plain character: logrus quotes microseconds.
        if self.out[start..].ends_with("µs") {
            self.out.insert(start, '"');
            self.out.push('"');
        }
        self
    }

    fn finish(mut self) -> String {
        self.out.push('\n');
        self.out
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
    let mut line = Line::new(time_ms, level, msg);
    for (k, v) in &fields {
        line = line.field(k, v);
    }
    line.finish()
}

/// logrus quotes a value unless every character is in `[A-Za-z0-9-._/@^+]`; the quoted form
/// escapes `"` and `\` and shows control characters as escapes, so one event is one line.
/// A value over `max` bytes is cut (`crate::bounds::cap`).
fn push_value(out: &mut String, v: &str, max: usize) {
    let v = crate::bounds::cap(v, max);
    let v = v.as_ref();
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/@^+".contains(c));
    if plain {
        out.push_str(v);
        return;
    }
    out.push('"');
    push_escaped(out, v);
    out.push('"');
}

/// The inside of a quoted value.
fn push_escaped(out: &mut String, v: &str) {
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
}

/// `push_value(out, &rfc3339(ms), _)` (always quoted: the time has colons), with the date and time
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

/// The last millisecond RFC 3339 (and `humantime`) can write: 9999-12-31T23:59:59.999Z.
const LAST_RFC3339_MS: u64 = 253_402_300_799_999;

/// RFC 3339 in UTC with milliseconds, from milliseconds since the Unix epoch (`humantime`).
/// A time past the year 9999 is written as its last millisecond.
pub fn rfc3339(ms: u64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(ms.min(LAST_RFC3339_MS));
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed by the caller.
    fn scratch_dir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "custos-audit-{label}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    #[test]
    fn buffered_lines_reach_their_file_on_flush_reopen_and_drop() {
        let dir = scratch_dir("buffered");
        let files = Files::open(&dir, 60_000, 0).unwrap();
        files.write(&files.audit, "one\n");
        files.write(&files.access, "a\n");
        assert_eq!(read(&dir, AUDIT_FILE), "", "held until the flusher runs");
        files.flush();
        assert_eq!(read(&dir, AUDIT_FILE), "one\n");
        assert_eq!(read(&dir, ACCESS_FILE), "a\n");

        // logrotate moves the file; the buffered line belongs to the old one.
        files.write(&files.audit, "two\n");
        std::fs::rename(dir.join(AUDIT_FILE), dir.join("audit.log.1")).unwrap();
        files.reopen().unwrap();
        assert_eq!(read(&dir, "audit.log.1"), "one\ntwo\n");
        assert_eq!(read(&dir, AUDIT_FILE), "");

        // Past the size limit a line is written without waiting; the rest on drop.
        let long = "x".repeat(LOG_BUFFER_LIMIT) + "\n";
        files.write(&files.audit, &long);
        assert_eq!(read(&dir, AUDIT_FILE), long);
        files.write(&files.audit, "three\n");
        drop(files);
        assert_eq!(read(&dir, AUDIT_FILE), long + "three\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_at_its_bound_is_rotated_and_disk_use_stays_bounded() {
        let dir = scratch_dir("rotate");
        // Unbuffered, a bound of 1,000 bytes: 100 lines of 100 bytes.
        let files = Files::open(&dir, 0, 1_000).unwrap();
        let line = format!("{}\n", "x".repeat(99));
        for _ in 0..100 {
            files.write(&files.access, &line);
        }
        let size = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
        assert!(size(ACCESS_FILE) < 1_000, "{}", size(ACCESS_FILE));
        assert_eq!(size("access.log.1"), 1_000);
        assert_eq!(size(ACCESS_FILE) + size("access.log.1"), 1_000);
        // Nothing else was written: the audit file is untouched, no third file appeared.
        assert_eq!(size(AUDIT_FILE), 0);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3);
        // Reopened over existing files, the size already written counts.
        drop(files);
        std::fs::write(dir.join(ACCESS_FILE), "y".repeat(950)).unwrap();
        let files = Files::open(&dir, 0, 1_000).unwrap();
        files.write(&files.access, &line);
        assert_eq!(size(ACCESS_FILE), 0, "rotated at 1,050 bytes");
        assert_eq!(size("access.log.1"), 1_050);
        drop(files);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unbuffered_lines_are_written_at_once_and_the_flusher_writes_the_rest() {
        let dir = scratch_dir("unbuffered");
        let files = Files::open(&dir, 0, 0).unwrap();
        files.write(&files.audit, "now\n");
        assert_eq!(read(&dir, AUDIT_FILE), "now\n");
        drop(files);

        let files = Arc::new(Files::open(&dir, 10, 0).unwrap());
        spawn_flusher(&files);
        files.write(&files.audit, "later\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while read(&dir, AUDIT_FILE) != "now\nlater\n" {
            assert!(
                std::time::Instant::now() < deadline,
                "the flusher never wrote"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(files);
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
            push_value(&mut plain, &rfc3339(ms), crate::bounds::MAX_LOGGED_FIELD);
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
    fn built_lines_match_the_sorted_general_form() {
        let roles = vec!["system.user".to_string(), "a \"b\"".to_string()];
        let groups: Vec<String> = Vec::new();
        for d in [
            Duration::from_nanos(7),
            Duration::from_nanos(12_345),
            Duration::from_micros(2_500),
            Duration::from_secs(3),
        ] {
            let built = Line::new(1_700_000_000_123, "info", "Authorized")
                .field("correlation-id", "r-1")
                .duration("duration", d)
                .list("groups", &groups)
                .field("method", "volume.inspect")
                .list("roles", &roles)
                .field("username", "x y")
                .finish();
            let general = logfmt_line(
                1_700_000_000_123,
                "info",
                "Authorized",
                vec![
                    ("username", "x y".into()),
                    ("roles", format!("[{}]", roles.join(" "))),
                    ("method", "volume.inspect".into()),
                    ("groups", "[]".into()),
                    ("duration", go_duration(d)),
                    ("correlation-id", "r-1".into()),
                ],
            );
            assert_eq!(built, general);
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "out of order")]
    fn built_lines_refuse_fields_out_of_order() {
        let _ = Line::new(0, "info", "x").field("b", "1").field("a", "2");
    }

    #[test]
    fn dates_and_durations() {
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(LAST_RFC3339_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(go_duration(Duration::from_nanos(999)), "999ns");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.500ms");
        assert_eq!(go_duration(Duration::from_millis(2500)), "2.500s");
        assert_eq!(go_duration(Duration::from_nanos(1_234_567)), "1.235ms");
        assert_eq!(go_duration(Duration::from_nanos(999_999_600)), "1000.000ms");
        assert_eq!(go_duration(Duration::from_nanos(12_345)), "12.345µs");
    }

    #[test]
    fn bounded_cuts_at_a_char_boundary() {
        let long = "é".repeat(MAX_FIELD);
        let cut = bounded(&long);
        assert!(cut.starts_with(&"é".repeat(MAX_FIELD / 2)));
        assert!(cut.ends_with(&format!("…(+{} bytes)", MAX_FIELD)), "{cut}");
    }

    #[test]
    fn every_value_of_a_line_is_capped() {
        let huge = "n".repeat(3 << 20);
        let msg = format!("Failed: rpc error: code = NotFound desc = Node {huge} not found");
        let access = Line::new(0, "info", &msg)
            .field("correlation-id", &huge)
            .list("groups", std::slice::from_ref(&huge))
            .field("method", "/openstorage.api.OpenStorageNode/Inspect")
            .finish();
        assert!(access.len() < 2048, "{} bytes", access.len());
        assert_eq!(
            access
                .matches(&format!("(+{} bytes)", (3 << 20) - 256))
                .count(),
            2
        );
        assert!(access.contains(&format!("…(+{} bytes)", msg.len() - 1024)));
        let general = logfmt_line(0, "warning", &huge, vec![("username", huge.clone())]);
        assert!(general.len() < 1500, "{} bytes", general.len());
        assert_eq!(general.matches('\n').count(), 1);
    }
}
