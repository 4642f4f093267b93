//! Client calls of `OpenStorageCredentials` and `OpenStorageAlerts` (`custos credentials ...`, `custos alerts ...`).

use crate::{Client, ClientError};
use custos_proto::openstorage::api::open_storage_alerts_client::OpenStorageAlertsClient;
use custos_proto::openstorage::api::open_storage_credentials_client::OpenStorageCredentialsClient;
use custos_proto::openstorage::api::*;

/// The SDK messages the alert filters are built from.
pub mod proto {
    pub use custos_proto::openstorage::api::{
        sdk_alerts_option, sdk_alerts_query, SdkAlertsAlertTypeQuery, SdkAlertsOption,
        SdkAlertsResourceIdQuery, SdkAlertsResourceTypeQuery,
    };
}

pub use custos_proto::openstorage::api::{
    sdk_credential_create_request::CredentialType, Alert, SdkAlertsQuery, SdkAwsCredentialRequest,
    SdkAzureCredentialRequest, SdkCredentialCreateRequest, SdkCredentialInspectResponse,
    SdkGoogleCredentialRequest, SdkNfsCredentialRequest,
};

impl Client {
    /// Creates a credential; its secrets travel to the member, which seals them.
    pub async fn create_credential(
        &self,
        req: &SdkCredentialCreateRequest,
    ) -> Result<String, ClientError> {
        self.call(|ch, id| {
            let msg = req.clone();
            async move {
                OpenStorageCredentialsClient::new(ch)
                    .create(self.request(msg, &id))
                    .await
                    .map(|r| r.into_inner().credential_id)
            }
        })
        .await
    }

    pub async fn enumerate_credentials(&self) -> Result<Vec<String>, ClientError> {
        self.call(|ch, id| async move {
            OpenStorageCredentialsClient::new(ch)
                .enumerate(self.request(SdkCredentialEnumerateRequest {}, &id))
                .await
                .map(|r| r.into_inner().credential_ids)
        })
        .await
    }

    pub async fn inspect_credential(
        &self,
        credential_id: &str,
    ) -> Result<SdkCredentialInspectResponse, ClientError> {
        self.call(|ch, id| async move {
            let msg = SdkCredentialInspectRequest {
                credential_id: credential_id.to_string(),
            };
            OpenStorageCredentialsClient::new(ch)
                .inspect(self.request(msg, &id))
                .await
                .map(|r| r.into_inner())
        })
        .await
    }

    pub async fn delete_credential(&self, credential_id: &str) -> Result<(), ClientError> {
        self.call(|ch, id| async move {
            let msg = SdkCredentialDeleteRequest {
                credential_id: credential_id.to_string(),
            };
            OpenStorageCredentialsClient::new(ch)
                .delete(self.request(msg, &id))
                .await
                .map(|_| ())
        })
        .await
    }

    pub async fn validate_credential(&self, credential_id: &str) -> Result<(), ClientError> {
        self.call(|ch, id| async move {
            let msg = SdkCredentialValidateRequest {
                credential_id: credential_id.to_string(),
            };
            OpenStorageCredentialsClient::new(ch)
                .validate(self.request(msg, &id))
                .await
                .map(|_| ())
        })
        .await
    }

    pub async fn delete_credential_references(
        &self,
        credential_id: &str,
    ) -> Result<(), ClientError> {
        self.call(|ch, id| async move {
            let msg = SdkCredentialDeleteReferencesRequest {
                credential_id: credential_id.to_string(),
            };
            OpenStorageCredentialsClient::new(ch)
                .delete_references(self.request(msg, &id))
                .await
                .map(|_| ())
        })
        .await
    }

    /// Every alert any query matches (the stream's messages gathered).
    pub async fn alerts(&self, queries: &[SdkAlertsQuery]) -> Result<Vec<Alert>, ClientError> {
        self.call(|ch, id| {
            let msg = SdkAlertsEnumerateWithFiltersRequest {
                queries: queries.to_vec(),
            };
            async move {
                let mut stream = OpenStorageAlertsClient::new(ch)
                    .enumerate_with_filters(self.request(msg, &id))
                    .await?
                    .into_inner();
                let mut out = Vec::new();
                while let Some(resp) = stream.message().await? {
                    out.extend(resp.alerts);
                }
                Ok(out)
            }
        })
        .await
    }

    pub async fn delete_alerts(&self, queries: &[SdkAlertsQuery]) -> Result<(), ClientError> {
        self.call(|ch, id| {
            let msg = SdkAlertsDeleteRequest {
                queries: queries.to_vec(),
            };
            async move {
                OpenStorageAlertsClient::new(ch)
                    .delete(self.request(msg, &id))
                    .await
                    .map(|_| ())
            }
        })
        .await
    }
}
