//! The writer of the leader-failover trials (`custos bench timeline`): one sequential writer
//! whose every attempt has a short deadline and, when it fails, moves on to the next member and
//! tries again until the write is acknowledged, recording when each write was acknowledged.
//! Afterwards every acknowledged write is read back. `scripts/bench.sh failover` SIGKILLs the
//! leader of a custos or etcd cluster meanwhile and turns the timeline into the longest gap
//! between acknowledgements.
//!
//! A retried write may have been applied by the attempt that timed out: custos answers the
//! retry with `AlreadyExists` (the volume's name is taken by that earlier attempt), which counts
//! as acknowledged; an etcd `Put` is idempotent.

use crate::etcd::Credentials;
use crate::{run_tag, BenchError};
use custos_client::{Client, CreateVolume};
use custos_proto::etcd::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// What the writer does.
#[derive(Clone, Debug)]
pub struct TimelineOptions {
    /// How long to write.
    pub duration: Duration,
    /// Deadline of each attempt.
    pub attempt_timeout: Duration,
    /// How long reading back may take (the cluster may still be electing at the end).
    pub verify_timeout: Duration,
}

/// What the writer saw.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Timeline {
    pub system: String,
    /// Writes acknowledged.
    pub acked: u64,
    /// Attempts that failed (each retried on the next member).
    pub failed_attempts: u64,
    /// When each write was acknowledged, in milliseconds after the start.
    pub ack_ms: Vec<f64>,
    /// The longest time without an acknowledgement (from the start, between two, or to the
    /// end), in milliseconds.
    pub longest_gap_ms: f64,
    /// Where that gap began, in milliseconds after the start.
    pub longest_gap_at_ms: f64,
    /// Acknowledged writes found when reading back, and those missing (must be 0).
    pub verified: u64,
    pub missing: u64,
    /// Why reading back did not finish, if it did not.
    pub verify_error: Option<String>,
}

impl Timeline {
    fn finish(&mut self, end_ms: f64) {
        let mut prev = 0.0;
        let mut gap = (0.0f64, 0.0f64);
        for t in self.ack_ms.iter().copied().chain([end_ms]) {
            if t - prev > gap.0 {
                gap = (t - prev, prev);
            }
            prev = t;
        }
        self.longest_gap_ms = gap.0;
        self.longest_gap_at_ms = gap.1;
    }
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// The writer against custos: `Volume.Create` of a new name per write, through the members in
/// turn (starting with the first endpoint), then `Enumerate` + `Inspect` to read back.
pub async fn custos(
    endpoints: &[String],
    token: Option<&str>,
    opts: &TimelineOptions,
) -> Result<Timeline, BenchError> {
    let setup = |m: String| BenchError::Setup {
        system: "custos",
        message: m,
    };
    if endpoints.is_empty() {
        return Err(setup("no endpoint".into()));
    }
    let members: Vec<Client> = endpoints
        .iter()
        .map(|e| {
            Client::new(std::slice::from_ref(e), token)
                .map(|c| c.with_timeout(opts.attempt_timeout))
                .map_err(|e| setup(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let tag = run_tag();
    let mut t = Timeline {
        system: "custos".into(),
        ..Timeline::default()
    };
    let mut names = Vec::new();
    let start = Instant::now();
    let mut member = 0usize;
    let mut i = 0u64;
    while start.elapsed() < opts.duration {
        let name = format!("failover-{tag}-{i}");
        let mut retried = false;
        while start.elapsed() < opts.duration {
            let spec = CreateVolume {
                name: name.clone(),
                size: 1 << 20,
                ha_level: 1,
                ..Default::default()
            };
            match members[member].create_volume(&spec).await {
                Ok(_) => break,
                Err(e)
                    if retried && e.code() == Some(custos_client::model::Code::AlreadyExists) =>
                {
                    break
                }
                Err(_) => {
                    t.failed_attempts += 1;
                    retried = true;
                    member = (member + 1) % members.len();
                }
            }
        }
        if start.elapsed() >= opts.duration {
            break;
        }
        t.ack_ms.push(ms(start));
        names.push(name);
        i += 1;
    }
    t.finish(opts.duration.as_secs_f64() * 1000.0);
    t.acked = names.len() as u64;

    // Read back through any member, with time for an election to end.
    let reader = Client::new(endpoints, token)
        .map_err(|e| setup(e.to_string()))?
        .with_timeout(Duration::from_secs(5));
    let deadline = Instant::now() + opts.verify_timeout;
    let found: Result<BTreeSet<String>, String> = loop {
        let attempt = async {
            let mut found = BTreeSet::new();
            for id in reader.enumerate_volumes().await? {
                let v = reader.inspect_volume(&id).await?;
                found.insert(v.name);
            }
            Ok::<_, custos_client::ClientError>(found)
        };
        match attempt.await {
            Ok(found) => break Ok(found),
            Err(e) if Instant::now() > deadline => break Err(e.to_string()),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    match found {
        Ok(found) => {
            t.verified = names.iter().filter(|n| found.contains(*n)).count() as u64;
            t.missing = t.acked - t.verified;
        }
        Err(e) => t.verify_error = Some(e),
    }
    Ok(t)
}

/// The writer against etcd: `Put` of a new key per write, through the members in turn, then a
/// linearizable prefix `Range` to read back.
pub async fn etcd(
    endpoints: &[String],
    creds: Option<&Credentials>,
    opts: &TimelineOptions,
) -> Result<Timeline, BenchError> {
    use crate::etcd::{authenticate, connect, request};
    if endpoints.is_empty() {
        return Err(BenchError::Setup {
            system: "etcd",
            message: "no endpoint".into(),
        });
    }
    // One connection and token per member; a member's simple token is its own, so a restarted
    // member needs a new one (fetched again after any failure there).
    let mut conns = Vec::new();
    for e in endpoints {
        let ch = connect(e).await?;
        let token = authenticate(&ch, creds).await?;
        conns.push((ch, Some(token)));
    }
    let prefix = format!("/failover/{}/", run_tag());
    let mut t = Timeline {
        system: "etcd".into(),
        ..Timeline::default()
    };
    let mut keys = Vec::new();
    let start = Instant::now();
    let mut member = 0usize;
    let mut i = 0u64;
    'writes: while start.elapsed() < opts.duration {
        let key = format!("{prefix}{i:08}");
        loop {
            if start.elapsed() >= opts.duration {
                break 'writes;
            }
            let (ch, token) = &mut conns[member];
            if token.is_none() {
                match tokio::time::timeout(opts.attempt_timeout, authenticate(ch, creds)).await {
                    Ok(Ok(fresh)) => *token = Some(fresh),
                    _ => {
                        t.failed_attempts += 1;
                        member = (member + 1) % conns.len();
                        continue;
                    }
                }
            }
            let msg = PutRequest {
                key: key.clone().into_bytes(),
                value: b"v".to_vec(),
                ..Default::default()
            };
            let sent = KvClient::new(ch.clone())
                .put(request(
                    msg,
                    token.as_ref().expect("authenticated above"),
                    opts.attempt_timeout,
                ))
                .await;
            match sent {
                Ok(_) => break,
                Err(_) => {
                    t.failed_attempts += 1;
                    *token = None;
                    member = (member + 1) % conns.len();
                }
            }
        }
        t.ack_ms.push(ms(start));
        keys.push(key);
        i += 1;
    }
    t.finish(opts.duration.as_secs_f64() * 1000.0);
    t.acked = keys.len() as u64;

    let deadline = Instant::now() + opts.verify_timeout;
    let mut k = 0usize;
    let found: Result<BTreeSet<Vec<u8>>, String> = loop {
        let (ch, _) = &conns[k % conns.len()];
        let attempt = async {
            let token = authenticate(ch, creds).await.map_err(|e| e.to_string())?;
            let mut end = prefix.clone().into_bytes();
            *end.last_mut().expect("non-empty prefix") += 1;
            let reply = KvClient::new(ch.clone())
                .range(request(
                    RangeRequest {
                        key: prefix.clone().into_bytes(),
                        range_end: end,
                        keys_only: true,
                        ..Default::default()
                    },
                    &token,
                    Duration::from_secs(5),
                ))
                .await
                .map_err(|s| s.message().to_string())?
                .into_inner();
            Ok::<_, String>(reply.kvs.into_iter().map(|kv| kv.key).collect())
        };
        match attempt.await {
            Ok(found) => break Ok(found),
            Err(e) if Instant::now() > deadline => break Err(e),
            Err(_) => {
                k += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    match found {
        Ok(found) => {
            t.verified = keys
                .iter()
                .filter(|key| found.contains(key.as_bytes()))
                .count() as u64;
            t.missing = t.acked - t.verified;
        }
        Err(e) => t.verify_error = Some(e),
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_counts_the_start_and_the_end() {
        let mut t = Timeline {
            ack_ms: vec![100.0, 150.0, 900.0, 950.0],
            ..Timeline::default()
        };
        t.finish(1000.0);
        assert_eq!((t.longest_gap_ms, t.longest_gap_at_ms), (750.0, 150.0));
        let mut quiet_end = Timeline {
            ack_ms: vec![10.0],
            ..Timeline::default()
        };
        quiet_end.finish(1000.0);
        assert_eq!(
            (quiet_end.longest_gap_ms, quiet_end.longest_gap_at_ms),
            (990.0, 10.0)
        );
        let mut nothing = Timeline::default();
        nothing.finish(500.0);
        assert_eq!(nothing.longest_gap_ms, 500.0);
    }
}
