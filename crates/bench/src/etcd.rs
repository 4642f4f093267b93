//! The etcd side of `custos bench`: `KV.Put` as the write and `KV.Range` of one key as the read
//! (linearizable, or `serializable = true`), with etcd's simple-token auth when a user is given:
//! each connection authenticates once and sends the token as the `token` metadata.

use crate::{measure, run_tag, BenchError, Options, Report, Target, Workload};
use custos_proto::etcd::etcdserverpb::auth_client::AuthClient;
use custos_proto::etcd::etcdserverpb::kv_client::KvClient;
use custos_proto::etcd::etcdserverpb::maintenance_client::MaintenanceClient;
use custos_proto::etcd::etcdserverpb::{
    AuthenticateRequest, PutRequest, RangeRequest, StatusRequest,
};
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

/// Bytes of every value written (the etcd baseline's shape).
pub const VALUE_SIZE: usize = 256;

/// A user name and password for etcd's `Authenticate`.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

fn setup(message: impl std::fmt::Display) -> BenchError {
    BenchError::Setup {
        system: "etcd",
        message: message.to_string(),
    }
}

/// The key of object `n` of the read key space.
pub fn key_name(n: u64) -> String {
    format!("/bench/k{n:07}")
}

pub(crate) async fn connect(addr: &str) -> Result<Channel, BenchError> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|_| setup(format!("invalid endpoint {addr:?}")))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| setup(format!("connecting to {addr}: {e}")))
}

/// A token for `creds` from the member behind `channel`, as metadata.
pub(crate) async fn authenticate(
    channel: &Channel,
    creds: Option<&Credentials>,
) -> Result<Option<MetadataValue<Ascii>>, BenchError> {
    let Some(creds) = creds else {
        return Ok(None);
    };
    let reply = AuthClient::new(channel.clone())
        .authenticate(AuthenticateRequest {
            name: creds.user.clone(),
            password: creds.password.clone(),
        })
        .await
        .map_err(|s| setup(format!("authenticate as {}: {}", creds.user, s.message())))?
        .into_inner();
    reply
        .token
        .parse()
        .map(Some)
        .map_err(|_| setup("etcd returned a token that is not ASCII"))
}

pub(crate) fn request<T>(
    msg: T,
    token: &Option<MetadataValue<Ascii>>,
    timeout: Duration,
) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(timeout);
    if let Some(t) = token {
        req.metadata_mut().insert("token", t.clone());
    }
    req
}

/// `KV.Put` of `key`.
pub(crate) async fn put(
    channel: &Channel,
    token: &Option<MetadataValue<Ascii>>,
    key: String,
    value: Vec<u8>,
    timeout: Duration,
) -> Result<(), String> {
    let msg = PutRequest {
        key: key.into_bytes(),
        value,
        ..Default::default()
    };
    KvClient::new(channel.clone())
        .put(request(msg, token, timeout))
        .await
        .map(|_| ())
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

/// `KV.Range` of the one preloaded `key` (an error when it is missing).
pub(crate) async fn get(
    channel: &Channel,
    token: &Option<MetadataValue<Ascii>>,
    key: String,
    serializable: bool,
    timeout: Duration,
) -> Result<(), String> {
    let msg = RangeRequest {
        key: key.clone().into_bytes(),
        serializable,
        ..Default::default()
    };
    let reply = KvClient::new(channel.clone())
        .range(request(msg, token, timeout))
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    if reply.kvs.is_empty() {
        return Err(format!("{key} not found: run the preload workload first"));
    }
    Ok(())
}

/// The client address of the member the others follow.
async fn leader(endpoints: &[String], creds: Option<&Credentials>) -> Result<String, BenchError> {
    Ok(leader_and_followers(endpoints, creds).await?.0)
}

/// The client address of the member the others follow, and those of the others.
pub(crate) async fn leader_and_followers(
    endpoints: &[String],
    creds: Option<&Credentials>,
) -> Result<(String, Vec<String>), BenchError> {
    let mut leader_id = None;
    let mut members = Vec::new();
    for addr in endpoints {
        let ch = connect(addr).await?;
        let token = authenticate(&ch, creds).await?;
        let status = MaintenanceClient::new(ch)
            .status(request(StatusRequest {}, &token, Duration::from_secs(5)))
            .await
            .map_err(|s| setup(format!("status of {addr}: {}", s.message())))?
            .into_inner();
        let me = status.header.map(|h| h.member_id).unwrap_or(0);
        members.push((me, addr.clone()));
        leader_id = leader_id.or((status.leader != 0).then_some(status.leader));
    }
    let leader_id = leader_id.ok_or_else(|| setup("no member knows a leader"))?;
    let (leaders, followers): (Vec<_>, Vec<_>) =
        members.into_iter().partition(|(id, _)| *id == leader_id);
    let leader = leaders
        .into_iter()
        .next()
        .map(|(_, addr)| addr)
        .ok_or_else(|| setup(format!("leader {leader_id:x} is not among {endpoints:?}")))?;
    Ok((leader, followers.into_iter().map(|(_, a)| a).collect()))
}

/// Runs `opts` against the etcd cluster at `endpoints` (client URLs' `host:port`).
pub async fn run(
    endpoints: &[String],
    creds: Option<&Credentials>,
    opts: &Options,
) -> Result<Report, BenchError> {
    opts.check()?;
    let targets = match opts.target {
        Target::All => endpoints.to_vec(),
        Target::Leader => vec![leader(endpoints, creds).await?],
    };
    let mut conns = Vec::with_capacity(opts.connections);
    for j in 0..opts.connections {
        let ch = connect(&targets[j % targets.len()]).await?;
        let token = authenticate(&ch, creds).await?;
        conns.push((ch, token));
    }
    let conns = Arc::new(conns);
    let p = opts.connections;
    let timeout = opts.op_timeout;
    let value: Arc<Vec<u8>> = Arc::new(vec![b'v'; VALUE_SIZE]);
    match opts.workload {
        Workload::Write | Workload::Preload => {
            let tag = run_tag();
            let write = opts.workload == Workload::Write;
            measure("etcd", opts, targets, move |client, n| {
                let conns = conns.clone();
                let value = value.clone();
                let key = if write {
                    format!("/bench/w/{tag}/{n:08}")
                } else {
                    key_name(n)
                };
                async move {
                    let (ch, token) = &conns[client % p];
                    put(ch, token, key, value.to_vec(), timeout).await
                }
            })
            .await
        }
        Workload::ReadLinearizable | Workload::ReadSerializable => {
            let serializable = opts.workload == Workload::ReadSerializable;
            let keys = opts.keys;
            measure("etcd", opts, targets, move |client, _| {
                let conns = conns.clone();
                let key = key_name(rand::random_range(0..keys));
                async move {
                    let (ch, token) = &conns[client % p];
                    get(ch, token, key, serializable, timeout).await
                }
            })
            .await
        }
    }
}
