//! Schedule policy and storage policy calls (`OpenStorageSchedulePolicy`, `OpenStoragePolicy`).

use crate::{Client, ClientError};
use custos_model::{SchedulePolicy, StoragePolicy};
use custos_proto::convert_policy as conv;
use custos_proto::openstorage::api::open_storage_policy_client::OpenStoragePolicyClient;
use custos_proto::openstorage::api::open_storage_schedule_policy_client::OpenStorageSchedulePolicyClient;
use custos_proto::openstorage::api::*;

/// A storage policy reply that must carry one, as the model reads it.
fn storage_policy(p: Option<SdkStoragePolicy>, what: &str) -> Result<StoragePolicy, ClientError> {
    let p = p.ok_or_else(|| ClientError::Protocol(format!("{what} returned no storage policy")))?;
    conv::storage_policy_from_proto(&p).map_err(ClientError::Protocol)
}

impl Client {
    pub async fn create_schedule_policy(&self, policy: &SchedulePolicy) -> Result<(), ClientError> {
        let msg = SdkSchedulePolicyCreateRequest {
            schedule_policy: Some(conv::schedule_policy_to_proto(policy)),
        };
        self.call(|ch, id| {
            let msg = msg.clone();
            async move {
                OpenStorageSchedulePolicyClient::new(ch)
                    .create(self.request(msg, &id))
                    .await
                    .map(drop)
            }
        })
        .await
    }

    pub async fn update_schedule_policy(&self, policy: &SchedulePolicy) -> Result<(), ClientError> {
        let msg = SdkSchedulePolicyUpdateRequest {
            schedule_policy: Some(conv::schedule_policy_to_proto(policy)),
        };
        self.call(|ch, id| {
            let msg = msg.clone();
            async move {
                OpenStorageSchedulePolicyClient::new(ch)
                    .update(self.request(msg, &id))
                    .await
                    .map(drop)
            }
        })
        .await
    }

    pub async fn schedule_policies(&self) -> Result<Vec<SchedulePolicy>, ClientError> {
        let reply = self
            .call(|ch, id| async move {
                OpenStorageSchedulePolicyClient::new(ch)
                    .enumerate(self.request(SdkSchedulePolicyEnumerateRequest {}, &id))
                    .await
                    .map(|r| r.into_inner().policies)
            })
            .await?;
        Ok(reply.iter().map(conv::schedule_policy_from_proto).collect())
    }

    pub async fn inspect_schedule_policy(&self, name: &str) -> Result<SchedulePolicy, ClientError> {
        let reply = self
            .call(|ch, id| async move {
                let msg = SdkSchedulePolicyInspectRequest {
                    name: name.to_string(),
                };
                OpenStorageSchedulePolicyClient::new(ch)
                    .inspect(self.request(msg, &id))
                    .await
                    .map(|r| r.into_inner().policy)
            })
            .await?;
        reply
            .as_ref()
            .map(conv::schedule_policy_from_proto)
            .ok_or_else(|| ClientError::Protocol("Inspect returned no schedule policy".into()))
    }

    pub async fn delete_schedule_policy(&self, name: &str) -> Result<(), ClientError> {
        self.call(|ch, id| async move {
            let msg = SdkSchedulePolicyDeleteRequest {
                name: name.to_string(),
            };
            OpenStorageSchedulePolicyClient::new(ch)
                .delete(self.request(msg, &id))
                .await
                .map(drop)
        })
        .await
    }

    pub async fn create_storage_policy(&self, policy: &StoragePolicy) -> Result<(), ClientError> {
        let msg = SdkOpenStoragePolicyCreateRequest {
            storage_policy: Some(conv::storage_policy_to_proto(policy)),
        };
        self.call(|ch, id| {
            let msg = msg.clone();
            async move {
                OpenStoragePolicyClient::new(ch)
                    .create(self.request(msg, &id))
                    .await
                    .map(drop)
            }
        })
        .await
    }

    pub async fn update_storage_policy(&self, policy: &StoragePolicy) -> Result<(), ClientError> {
        let msg = SdkOpenStoragePolicyUpdateRequest {
            storage_policy: Some(conv::storage_policy_to_proto(policy)),
        };
        self.call(|ch, id| {
            let msg = msg.clone();
            async move {
                OpenStoragePolicyClient::new(ch)
                    .update(self.request(msg, &id))
                    .await
                    .map(drop)
            }
        })
        .await
    }

    /// The storage policies the caller may read.
    pub async fn storage_policies(&self) -> Result<Vec<StoragePolicy>, ClientError> {
        let reply = self
            .call(|ch, id| async move {
                OpenStoragePolicyClient::new(ch)
                    .enumerate(self.request(SdkOpenStoragePolicyEnumerateRequest {}, &id))
                    .await
                    .map(|r| r.into_inner().storage_policies)
            })
            .await?;
        reply
            .into_iter()
            .map(|p| storage_policy(Some(p), "Enumerate"))
            .collect()
    }

    pub async fn inspect_storage_policy(&self, name: &str) -> Result<StoragePolicy, ClientError> {
        let reply = self
            .call(|ch, id| async move {
                let msg = SdkOpenStoragePolicyInspectRequest {
                    name: name.to_string(),
                };
                OpenStoragePolicyClient::new(ch)
                    .inspect(self.request(msg, &id))
                    .await
                    .map(|r| r.into_inner().storage_policy)
            })
            .await?;
        storage_policy(reply, "Inspect")
    }

    pub async fn delete_storage_policy(&self, name: &str) -> Result<(), ClientError> {
        self.call(|ch, id| async move {
            let msg = SdkOpenStoragePolicyDeleteRequest {
                name: name.to_string(),
            };
            OpenStoragePolicyClient::new(ch)
                .delete(self.request(msg, &id))
                .await
                .map(drop)
        })
        .await
    }

    pub async fn set_default_storage_policy(&self, name: &str) -> Result<(), ClientError> {
        self.call(|ch, id| async move {
            let msg = SdkOpenStoragePolicySetDefaultRequest {
                name: name.to_string(),
            };
            OpenStoragePolicyClient::new(ch)
                .set_default(self.request(msg, &id))
                .await
                .map(drop)
        })
        .await
    }

    /// The default storage policy, if one is set.
    pub async fn default_storage_policy(&self) -> Result<Option<StoragePolicy>, ClientError> {
        let reply = self
            .call(|ch, id| async move {
                OpenStoragePolicyClient::new(ch)
                    .default_inspect(
                        self.request(SdkOpenStoragePolicyDefaultInspectRequest {}, &id),
                    )
                    .await
                    .map(|r| r.into_inner().storage_policy)
            })
            .await?;
        reply
            .map(|p| storage_policy(Some(p), "DefaultInspect"))
            .transpose()
    }

    pub async fn release_storage_policy(&self) -> Result<(), ClientError> {
        self.call(|ch, id| async move {
            OpenStoragePolicyClient::new(ch)
                .release(self.request(SdkOpenStoragePolicyReleaseRequest {}, &id))
                .await
                .map(drop)
        })
        .await
    }
}
