//! The access layer: wraps every SDK-port call (and, through [`logged`], every REST call) to
//! learn how it ended, for the access log and the local audit lines of reads.
//!
//! The edge (`Node::caller`) records the verified caller of the call in a task-local slot the
//! layer installs; when the handler's response is ready, the layer reads the gRPC status
//! (a trailers-only response carries it in its headers; a successful unary one has none there)
//! and hands both to [`crate::audit::Audit::call_finished`]. Calls that never passed the edge
//! (authentication or role refusal, health, reflection) leave the slot empty and are not logged
//! here.

use crate::node::Node;
use custos_model::{Identity, MethodName};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

/// What the edge learned about the call in flight.
#[derive(Clone, Debug)]
pub struct CallInfo {
    pub identity: Identity,
    pub method: MethodName,
    pub request_id: String,
    /// The call proposed a command (apply audits it).
    pub wrote: bool,
}

#[derive(Default)]
struct CallSlot(Mutex<Option<CallInfo>>);

tokio::task_local! {
    static CALL: Arc<CallSlot>;
}

/// Records the caller of the current call (no-op outside the layer).
pub fn set_caller(info: CallInfo) {
    let _ = CALL.try_with(|slot| *slot.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(info));
}

/// Marks the current call as having proposed a command.
pub fn mark_write() {
    let _ = CALL.try_with(|slot| {
        if let Some(info) = slot.0.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            info.wrote = true;
        }
    });
}

/// Runs one call that does not come through the gRPC layer (the REST gateway) with the same
/// slot, and logs how it ended.
pub async fn logged<T>(
    node: &Node,
    rpc: &str,
    call: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    let slot = Arc::new(CallSlot::default());
    let start = Instant::now();
    let result = CALL.scope(slot.clone(), call).await;
    let (code, message) = match &result {
        Ok(_) => (0, String::new()),
        Err(s) => (s.code() as i32, s.message().to_string()),
    };
    node.metrics.observe_request(rpc, code, start.elapsed());
    let info = slot.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(info) = info {
        node.audit
            .call_finished(&info, code, &message, start.elapsed());
    }
    result
}

/// The layer, added to the SDK server.
#[derive(Clone)]
pub struct AccessLayer {
    pub node: Arc<Node>,
}

impl<S> tower::Layer<S> for AccessLayer {
    type Service = AccessService<S>;
    fn layer(&self, inner: S) -> AccessService<S> {
        AccessService {
            inner,
            node: self.node.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AccessService<S> {
    inner: S,
    node: Arc<Node>,
}

/// The gRPC status of a response whose headers carry one (trailers-only); `(0, "")` otherwise.
fn status_of<B>(resp: &http::Response<B>) -> (i32, String) {
    let h = resp.headers();
    let code = h
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let message = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    (code, message)
}

/// gRPC percent-encodes `grpc-message`.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for AccessService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready serves this call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let node = self.node.clone();
        let slot = Arc::new(CallSlot::default());
        let start = Instant::now();
        let path = req.uri().path().to_string();
        Box::pin(async move {
            let result = CALL.scope(slot.clone(), inner.call(req)).await;
            let call = slot.0.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Ok(resp) = &result {
                let (code, message) = status_of(resp);
                node.metrics.observe_request(&path, code, start.elapsed());
                if let Some(call) = call {
                    node.audit
                        .call_finished(&call, code, &message, start.elapsed());
                }
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(
            super::percent_decode("Access%20denied%25"),
            "Access denied%"
        );
        assert_eq!(super::percent_decode("100%"), "100%");
        assert_eq!(super::percent_decode("%zz"), "%zz");
    }
}
