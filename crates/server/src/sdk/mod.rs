//! The OpenStorage SDK services custos serves, on top of [`Node`](crate::node::Node).

mod alerts;
mod cluster;
mod credentials;
mod policy;
mod role;
mod volume;

pub use alerts::AlertsService;
pub use cluster::{ClusterService, IdentityService, MountAttachService, NodeService, SDK_VERSION};
pub use credentials::CredentialsService;
pub use policy::{SchedulePolicyService, StoragePolicyService};
pub use role::RoleService;
pub use volume::VolumeService;

/// Defines trait methods of served services that custos does not implement: each answers
/// `UNIMPLEMENTED` naming the method (listed in docs/compatibility.md).
macro_rules! unimplemented_methods {
    ($service:literal; $($method:ident => $name:literal ($req:ty) -> $resp:ty;)*) => {
        // Written in the shape `#[async_trait]` gives trait methods, because the attribute on the
        // impl does not see methods that come out of a macro.
        $(
            fn $method<'life0, 'async_trait>(
                &'life0 self,
                _request: tonic::Request<$req>,
            ) -> ::core::pin::Pin<
                Box<
                    dyn ::core::future::Future<Output = Result<tonic::Response<$resp>, tonic::Status>>
                        + ::core::marker::Send
                        + 'async_trait,
                >,
            >
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(async move { Err($crate::status::unimplemented(concat!($service, ".", $name))) })
            }
        )*
    };
}
pub(crate) use unimplemented_methods;
