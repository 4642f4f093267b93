//! The OpenStorage SDK services custos serves, on top of [`Node`](crate::node::Node).

mod cluster;
mod role;
mod volume;

pub use cluster::{ClusterService, IdentityService, MountAttachService, NodeService};
pub use role::RoleService;
pub use volume::VolumeService;

/// Defines trait methods of served services that custos does not implement: each answers
/// `UNIMPLEMENTED` naming the method (listed in docs/compatibility.md).
macro_rules! unimplemented_methods {
    ($service:literal; $($method:ident => $name:literal ($req:ty) -> $resp:ty;)*) => {
        $(
            async fn $method(
                &self,
                _request: tonic::Request<$req>,
            ) -> Result<tonic::Response<$resp>, tonic::Status> {
                Err($crate::status::unimplemented(concat!($service, ".", $name)))
            }
        )*
    };
}
pub(crate) use unimplemented_methods;
