//! The edge of a request: who is calling (token → identity), its request id, its deadline and
//! the consistency it asks for, and the role decision, taken on state that is never stale.
//!
//! Every handler enters through one of three doors, each authenticating first:
//! - [`Node::reader`]: a read. The role decision is made on the state the read then reads: after
//!   the read barrier for a linearizable read (so it sees every role change acknowledged before
//!   the call arrived), on the member's local state for a serializable one (which may be stale
//!   in both directions, as the read itself).
//! - [`Node::writer`]: a write. An allow here only lets the command be proposed: apply decides
//!   again at the log index. A refusal here is confirmed after a read barrier before the caller
//!   gets it, so no acknowledged grant is ever followed by a refusal; and a request id apply
//!   already answered goes on to apply, which gives its first outcome.
//! - [`Node::local_reader`]: introspection of the member itself (`ClusterAdmin.Status`), decided
//!   on local state like a serializable read, so that it answers while there is no quorum.
//!
//! A refusal is written to the audit trail only once it is the answer the caller receives.

use crate::node::{Consistency, Node};
use crate::status;
use custos_model::{Identity, MethodName, RequestId};
use std::time::{Duration, Instant};
use tonic::metadata::MetadataMap;
use tonic::Status;

/// Metadata a client may send to choose its own request id (retries reuse it).
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Metadata asking for a local, possibly stale read.
pub const CONSISTENCY_HEADER: &str = "x-custos-consistency";

/// Everything the edge learned about a call.
#[derive(Clone, Debug)]
pub struct Caller {
    pub identity: Identity,
    pub method: MethodName,
    pub request_id: RequestId,
    /// What audit lines name the call by: the client's `x-request-id`, or the id made for it.
    correlation: String,
    /// The gRPC path of the call.
    full_method: String,
    pub consistency: Consistency,
    pub deadline: Instant,
}

/// The `authorization` value. A header that is present but repeated or not visible ASCII is
/// malformed, never "no header": falling back to guest there would let a bad token pass as
/// anonymous.
fn authorization_header(meta: &MetadataMap) -> Result<Option<&str>, Status> {
    let mut values = meta.get_all("authorization").iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => v.to_str().map(Some).map_err(|_| malformed()),
        (Some(_), Some(_)) => Err(malformed()),
    }
}

fn malformed() -> Status {
    Status::unauthenticated(custos_auth::error::MSG_INVALID_HEADER)
}

/// The client's deadline from `grpc-timeout`, capped by the node's request timeout. The node
/// gives up a little before the client does (a tenth, at most 100 ms), so that the client
/// receives the node's UNAVAILABLE rather than its own DEADLINE_EXCEEDED.
pub(crate) fn deadline(meta: &MetadataMap, default: Duration) -> Instant {
    let from_client = meta
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map(|d| d - (d / 10).min(Duration::from_millis(100)));
    Instant::now() + from_client.map_or(default, |d| d.min(default))
}

/// A `grpc-timeout` value: at most 8 digits and a unit, as the gRPC spec has it (tonic ignores
/// longer values too). Longer values used to reach `n * 3600` and overflow: a client could make
/// the handler panic with `grpc-timeout: 99999999999999999H`.
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || !v.is_ascii() {
        return None;
    }
    let (num, unit) = v.split_at(v.len() - 1);
    if num.len() > 8 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The audit message of a call the edge refused because its token is revoked.
pub const EDGE_REVOKED_MESSAGE: &str = "Access denied: token revoked";

/// The replicated state, locked for reading, as a read's role decision saw it.
pub type StateGuard<'a> = std::sync::RwLockReadGuard<'a, custos_model::State>;

impl Node {
    /// Authenticates the call: identity, request id, consistency and deadline. No role decision:
    /// that is the door's ([`Node::reader`], [`Node::writer`], [`Node::local_reader`]).
    fn authenticate(&self, meta: &MetadataMap, full_method: &str) -> Result<Caller, Status> {
        let client_id = meta
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128);
        // What audit lines of a refused call name it by: the client's id, or a fresh one.
        let correlation = || {
            client_id
                .map(str::to_string)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
        };
        let identity = match self.authenticator() {
            // Upstream's "auth off": every caller is an administrator.
            None => Identity::internal_admin(""),
            Some(auth) => {
                let header = authorization_header(meta).inspect_err(|s| {
                    self.metrics.auth_failure("malformed_header");
                    let code = crate::audit::code_name(s.code() as i32);
                    self.audit.authentication_failed(
                        s.message(),
                        code,
                        "malformed_header",
                        "",
                        &correlation(),
                    );
                })?;
                match auth.authenticate(header, crate::node::now_ms() / 1000) {
                    Ok(identity) => identity,
                    Err(e) => {
                        self.metrics.auth_failure(e.reason);
                        let reason = e.reason;
                        let s = status::from_auth(e);
                        let fingerprint = header
                            .and_then(|h| h.split_once(' '))
                            .map(|(_, token)| custos_auth::token_fingerprint(token))
                            .unwrap_or_default();
                        let code = crate::audit::code_name(s.code() as i32);
                        self.audit.authentication_failed(
                            s.message(),
                            code,
                            reason,
                            &fingerprint,
                            &correlation(),
                        );
                        return Err(s);
                    }
                }
            }
        };
        let method = MethodName::from_full(full_method);
        let (request_id, correlation) = match client_id {
            // Scoped by caller, so one client's id can never return another's outcome.
            Some(v) => (
                RequestId(format!("{}/{}/{v}", identity.issuer, identity.username)),
                v.to_string(),
            ),
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                (RequestId(id.clone()), id)
            }
        };
        let consistency = match meta.get(CONSISTENCY_HEADER).and_then(|v| v.to_str().ok()) {
            Some(v) if v.eq_ignore_ascii_case("serializable") => Consistency::Serializable,
            _ => Consistency::Linearizable,
        };
        let deadline = deadline(meta, Duration::from_millis(self.config.request_timeout_ms));
        Ok(Caller {
            identity,
            method,
            request_id,
            correlation,
            full_method: full_method.to_string(),
            consistency,
            deadline,
        })
    }

    /// The door of a read: authenticates, waits for the read barrier the caller's consistency
    /// asks for, and decides the caller's role on the state the read then reads, which it
    /// returns (drop it before any `.await`).
    pub async fn reader(
        &self,
        meta: &MetadataMap,
        full_method: &str,
    ) -> Result<(Caller, StateGuard<'_>), Status> {
        let caller = self.authenticate(meta, full_method)?;
        self.read_barrier(caller.consistency, caller.deadline)
            .await?;
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        self.decide(&caller, &state)?;
        Ok((caller, state))
    }

    /// The door of a node-local introspection call: authenticates and decides on this member's
    /// local state, without a barrier (a serializable read: it must answer without a quorum).
    pub fn local_reader(&self, meta: &MetadataMap, full_method: &str) -> Result<Caller, Status> {
        let caller = self.authenticate(meta, full_method)?;
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        self.decide(&caller, &state)?;
        Ok(caller)
    }

    /// The door of a write: authenticates and checks the caller's role early. An allow only
    /// lets the command be proposed (apply decides at its log index); a refusal on local state
    /// is confirmed after a linearizable read barrier, whatever consistency the call asked
    /// for, so a member that is behind never refuses what an acknowledged grant allows. A
    /// request id that apply already answered goes on to apply, which answers it again.
    pub async fn writer(&self, meta: &MetadataMap, full_method: &str) -> Result<Caller, Status> {
        let caller = self.authenticate(meta, full_method)?;
        let allowed = self
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .authorize(&caller.identity, &caller.method)
            .is_ok();
        if allowed {
            self.passed(&caller);
            return Ok(caller);
        }
        // The confirmation costs a read-index round: it is a write in flight on this member
        // (and a read waiter), so a flood of refused writes meets the same bounds as writes.
        let _slot = self.enter_write()?;
        self.metrics.edge_rechecks.inc();
        self.read_barrier(Consistency::Linearizable, caller.deadline)
            .await?;
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        if state.remembered(&caller.request_id).is_some() {
            drop(state);
            self.passed(&caller);
            return Ok(caller);
        }
        self.decide(&caller, &state)?;
        self.metrics.edge_rechecks_allowed.inc();
        Ok(caller)
    }

    /// The role decision on `state`: a refusal is audited (it is the caller's answer) and
    /// returned; an allow marks the call as passed.
    fn decide(&self, caller: &Caller, state: &custos_model::State) -> Result<(), Status> {
        if let Err(refusal) = state.authorize(&caller.identity, &caller.method) {
            // A revoked token says so in the trail (apply's refusals carry it as the reason).
            let message = if refusal.message == custos_model::revocation::MSG_TOKEN_REVOKED {
                EDGE_REVOKED_MESSAGE
            } else {
                "Access denied"
            };
            self.audit.denied(
                &caller.identity,
                &caller.method,
                message,
                Vec::new(),
                &caller.correlation,
            );
            return Err(status::from_rejection(refusal));
        }
        self.passed(caller);
        Ok(())
    }

    /// The call passed the edge: its access line starts, and the access layer learns who made it.
    fn passed(&self, caller: &Caller) {
        self.audit
            .call_started(&caller.full_method, &caller.request_id.0);
        crate::access::set_caller(crate::access::CallInfo {
            identity: caller.identity.clone(),
            method: caller.method.clone(),
            request_id: caller.request_id.0.clone(),
            wrote: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::parse_grpc_timeout;
    use std::time::Duration;

    #[test]
    fn a_malformed_authorization_header_is_never_a_guest() {
        use super::authorization_header;
        use tonic::metadata::{MetadataMap, MetadataValue};
        let mut meta = MetadataMap::new();
        assert_eq!(authorization_header(&meta).unwrap(), None);
        meta.insert("authorization", "bearer abc".parse().unwrap());
        assert_eq!(authorization_header(&meta).unwrap(), Some("bearer abc"));
        meta.append("authorization", "bearer other".parse().unwrap());
        assert_eq!(
            authorization_header(&meta).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let mut meta = MetadataMap::new();
        // obs-text (0x80-0xFF) is legal in HTTP/2 header values but is not a token.
        let bytes = MetadataValue::try_from(&b"bearer \xff\xfe"[..]).unwrap();
        meta.insert("authorization", bytes);
        let err = authorization_header(&meta).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert_eq!(err.message(), "Invalid or missing authentication token");
    }

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout("200m"), Some(Duration::from_millis(200)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("x"), None);
        assert_eq!(parse_grpc_timeout("12q"), None);
        assert_eq!(
            parse_grpc_timeout("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        // Over 8 digits is not a gRPC timeout (and used to overflow).
        assert_eq!(parse_grpc_timeout("99999999999999999H"), None);
        assert_eq!(parse_grpc_timeout("18446744073709551615M"), None);
        assert_eq!(parse_grpc_timeout("+5S"), None);
        assert_eq!(parse_grpc_timeout("5\u{e9}"), None);
    }
}
