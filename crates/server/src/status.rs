//! The one place that maps domain refusals and node errors to gRPC statuses.

use custos_auth::{AuthError, AuthErrorKind};
use custos_model::{Code, Rejection};
use tonic::Status;

/// Maps a domain code to its gRPC code.
pub fn grpc_code(code: Code) -> tonic::Code {
    match code {
        Code::InvalidArgument => tonic::Code::InvalidArgument,
        Code::NotFound => tonic::Code::NotFound,
        Code::AlreadyExists => tonic::Code::AlreadyExists,
        Code::PermissionDenied => tonic::Code::PermissionDenied,
        Code::Unauthenticated => tonic::Code::Unauthenticated,
        Code::FailedPrecondition => tonic::Code::FailedPrecondition,
        Code::ResourceExhausted => tonic::Code::ResourceExhausted,
        Code::Unavailable => tonic::Code::Unavailable,
        Code::Unimplemented => tonic::Code::Unimplemented,
        Code::Aborted => tonic::Code::Aborted,
    }
}

pub fn from_rejection(r: Rejection) -> Status {
    Status::new(grpc_code(r.code), r.message)
}

pub fn from_auth(e: AuthError) -> Status {
    match e.kind {
        AuthErrorKind::Unauthenticated => Status::unauthenticated(e.message),
        AuthErrorKind::PermissionDenied => Status::permission_denied(e.message),
    }
}

/// No leader could be reached before the deadline.
pub fn no_leader(what: &str) -> Status {
    Status::unavailable(format!(
        "{what}: no Raft leader reachable before the deadline; the cluster may be electing a \
         leader or have lost its quorum, retry shortly"
    ))
}

/// A method of a served service that custos does not implement.
pub fn unimplemented(method: &str) -> Status {
    Status::unimplemented(format!(
        "custos does not serve {method}: see docs/compatibility.md for the methods it implements"
    ))
}

/// An internal fault; the message never carries request contents.
pub fn internal(what: impl std::fmt::Display) -> Status {
    Status::internal(format!("internal error: {what}"))
}

/// A member at one of its bounds (`[limits]`): the caller should retry with backoff, here or
/// on another member.
pub fn overloaded(what: &str, limit: usize) -> Status {
    Status::resource_exhausted(format!(
        "custos: too many {what} on this member ({limit}); retry later"
    ))
}

/// A request whose deadline passed while it waited on this member, answered as deadlines are
/// everywhere here (UNAVAILABLE: the client then receives the node's answer rather than its own
/// DEADLINE_EXCEEDED). It was not proposed: a retry with the same request id is safe.
pub fn expired(what: &str) -> Status {
    Status::unavailable(format!(
        "{what}: the deadline passed before it was proposed (the member is busy); it was not \
         applied, retry with backoff"
    ))
}
