//! The custos side of `custos bench`: `Volume.Create` as the write and `Volume.Inspect` as the
//! read, through the SDK client (`custos-client`) with its bearer token, as users call custos.

use crate::{measure, run_tag, BenchError, Options, Report, Target, Workload};
use custos_client::{Client, CreateVolume};
use std::sync::Arc;
use std::time::Duration;

/// Size of every volume the benchmark creates (metadata only: nothing is allocated).
const VOLUME_SIZE: u64 = 1 << 20;

pub(crate) fn setup(message: impl std::fmt::Display) -> BenchError {
    BenchError::Setup {
        system: "custos",
        message: message.to_string(),
    }
}

/// The SDK addresses of the member `endpoints` name as leader and of the other members.
pub(crate) async fn leader_and_followers(
    endpoints: &[String],
    token: Option<&str>,
) -> Result<(String, Vec<String>), BenchError> {
    let probe = Client::new(endpoints, token)
        .map_err(setup)?
        .with_timeout(Duration::from_secs(5));
    let status = probe.status().await.map_err(setup)?;
    let leader = status
        .members
        .iter()
        .find(|m| m.id == status.leader_id && status.leader_id != 0)
        .map(|m| m.sdk_addr.clone())
        .ok_or_else(|| setup(format!("no leader known (node {})", status.node_id)))?;
    let others = status
        .members
        .iter()
        .filter(|m| m.id != status.leader_id)
        .map(|m| m.sdk_addr.clone())
        .collect();
    Ok((leader, others))
}

/// The name of object `n` of the read key space.
pub fn key_name(n: u64) -> String {
    format!("bench-key-{n:07}")
}

/// Runs `opts` against the custos cluster reachable at `endpoints`, calling as `token`.
pub async fn run(
    endpoints: &[String],
    token: Option<&str>,
    opts: &Options,
) -> Result<Report, BenchError> {
    opts.check()?;
    let targets = match opts.target {
        Target::All => endpoints.to_vec(),
        Target::Leader => vec![leader_and_followers(endpoints, token).await?.0],
    };
    let serializable = opts.workload == Workload::ReadSerializable;
    let mut conns = Vec::with_capacity(opts.connections);
    for j in 0..opts.connections {
        let addr = targets[j % targets.len()].clone();
        let mut c = Client::new(&[addr], token)
            .map_err(setup)?
            .with_timeout(opts.op_timeout);
        if serializable {
            c = c.with_serializable_reads();
        }
        // Connect before the clock starts. Only an unreachable member stops the run: a caller
        // the role check refuses still gets a report (of refusals).
        if let Err(e) = c.status().await {
            if e.code() == Some(custos_client::model::Code::Unavailable) {
                return Err(setup(e));
            }
        }
        conns.push(c);
    }
    let conns = Arc::new(conns);
    let p = opts.connections;
    match opts.workload {
        Workload::Write | Workload::Preload => {
            let tag = run_tag();
            let write = opts.workload == Workload::Write;
            measure("custos", opts, targets, move |client, n| {
                let conns = conns.clone();
                let name = if write {
                    format!("bench-{tag}-{n}")
                } else {
                    key_name(n)
                };
                async move {
                    let opts = CreateVolume {
                        name,
                        size: VOLUME_SIZE,
                        ha_level: 1,
                        ..Default::default()
                    };
                    conns[client % p]
                        .create_volume(&opts)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            })
            .await
        }
        Workload::ReadLinearizable | Workload::ReadSerializable => {
            // The key space: the preloaded volumes, by id (Inspect takes ids).
            let mut ids = conns[0].enumerate_volumes().await.map_err(setup)?;
            ids.sort();
            ids.truncate(opts.keys as usize);
            if ids.is_empty() {
                return Err(setup("no volumes to read: run the preload workload first"));
            }
            let ids = Arc::new(ids);
            measure("custos", opts, targets, move |client, _| {
                let conns = conns.clone();
                let ids = ids.clone();
                async move {
                    let id = &ids[rand::random_range(0..ids.len())];
                    conns[client % p]
                        .inspect_volume(id)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            })
            .await
        }
    }
}
