//! `OpenStorageAlerts`: the alerts custos raised about itself, listed with upstream's filters and deleted through Raft.

use crate::node::Node;
use custos_model::alert::MUST_PROVIDE_QUERY;
use custos_model::Op;
use custos_proto::convert::credentials as convert;
use custos_proto::openstorage::api::open_storage_alerts_server::OpenStorageAlerts;
use custos_proto::openstorage::api::*;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Alerts per streamed message, as upstream.
pub const ALERT_CHUNK: usize = 128;

pub struct AlertsService {
    pub node: Arc<Node>,
}

fn method(name: &str) -> String {
    format!("/openstorage.api.OpenStorageAlerts/{name}")
}

type AlertStream = std::pin::Pin<
    Box<
        dyn futures::Stream<Item = Result<SdkAlertsEnumerateWithFiltersResponse, Status>>
            + Send
            + 'static,
    >,
>;

impl AlertsService {
    /// The matching alerts in upstream's chunks (for the gRPC stream and the REST route).
    pub async fn enumerate_chunks(
        &self,
        meta: &tonic::metadata::MetadataMap,
        req: &SdkAlertsEnumerateWithFiltersRequest,
    ) -> Result<Vec<SdkAlertsEnumerateWithFiltersResponse>, Status> {
        let (_, state) = self
            .node
            .reader(meta, &method("EnumerateWithFilters"))
            .await?;
        if req.queries.is_empty() {
            return Err(Status::invalid_argument(MUST_PROVIDE_QUERY));
        }
        let queries = convert::alert_queries_from_proto(&req.queries);
        let alerts: Vec<Alert> = state
            .matching_alerts(&queries)
            .map(convert::alert_to_proto)
            .collect();
        Ok(alerts
            .chunks(ALERT_CHUNK)
            .map(|c| SdkAlertsEnumerateWithFiltersResponse { alerts: c.to_vec() })
            .collect())
    }
}

#[tonic::async_trait]
impl OpenStorageAlerts for AlertsService {
    type EnumerateWithFiltersStream = AlertStream;

    async fn enumerate_with_filters(
        &self,
        request: Request<SdkAlertsEnumerateWithFiltersRequest>,
    ) -> Result<Response<Self::EnumerateWithFiltersStream>, Status> {
        let chunks = self
            .enumerate_chunks(request.metadata(), request.get_ref())
            .await?;
        Ok(Response::new(Box::pin(futures::stream::iter(
            chunks.into_iter().map(Ok),
        ))))
    }

    async fn delete(
        &self,
        request: Request<SdkAlertsDeleteRequest>,
    ) -> Result<Response<SdkAlertsDeleteResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        let caller = self.node.writer(&meta, &method("Delete")).await?;
        if req.queries.is_empty() {
            return Err(Status::invalid_argument(MUST_PROVIDE_QUERY));
        }
        let queries = convert::alert_queries_from_proto(&req.queries);
        self.node
            .write(
                caller.identity,
                caller.request_id,
                Op::DeleteAlerts { queries },
                caller.deadline,
            )
            .await?;
        Ok(Response::new(SdkAlertsDeleteResponse {}))
    }
}
