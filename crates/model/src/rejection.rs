//! Deterministic refusals: the one error type of the domain, with upstream message texts.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The class of a refusal. The server maps each to exactly one gRPC code (and HTTP status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Code {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    Unauthenticated,
    FailedPrecondition,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
    /// New variants go last (encoded by position in remembered outcomes).
    Aborted,
}

impl Code {
    /// The gRPC code name, as audit records and logs spell it.
    pub fn name(self) -> &'static str {
        match self {
            Code::InvalidArgument => "InvalidArgument",
            Code::NotFound => "NotFound",
            Code::AlreadyExists => "AlreadyExists",
            Code::PermissionDenied => "PermissionDenied",
            Code::Unauthenticated => "Unauthenticated",
            Code::FailedPrecondition => "FailedPrecondition",
            Code::ResourceExhausted => "ResourceExhausted",
            Code::Unavailable => "Unavailable",
            Code::Unimplemented => "Unimplemented",
            Code::Aborted => "Aborted",
        }
    }
}

/// A refusal with its client-visible message. Produced identically on every node by apply,
/// or by the same checks run early at the edge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub code: Code,
    pub message: String,
}

impl Rejection {
    pub fn new(code: Code, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Rejection {
        Rejection::new(Code::InvalidArgument, message)
    }
    pub fn denied(message: impl Into<String>) -> Rejection {
        Rejection::new(Code::PermissionDenied, message)
    }
    pub fn not_found(message: impl Into<String>) -> Rejection {
        Rejection::new(Code::NotFound, message)
    }
    pub fn exists(message: impl Into<String>) -> Rejection {
        Rejection::new(Code::AlreadyExists, message)
    }
    pub fn precondition(message: impl Into<String>) -> Rejection {
        Rejection::new(Code::FailedPrecondition, message)
    }
    pub fn exhausted(message: impl Into<String>) -> Rejection {
        Rejection::new(Code::ResourceExhausted, message)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl std::error::Error for Rejection {}
