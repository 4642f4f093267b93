//! The duties that raise alerts through Raft (`Op::RaiseAlerts`): members down and back (leader), a member's own audit chain and TLS certificate (every member).
//!
//! Replica re-placement raises its alert inside the apply of `Op::ReplaceReplicas`
//! (`model::alert::replacement_alerts`), so it needs no duty here.

use crate::duties::node_identity;
use crate::liveness::DOWN_AFTER;
use crate::node::Node;
use custos_model::alert::{types, AlertRaise, ResourceKind, Severity};
use custos_model::{Op, RequestId};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a member checks its own audit chain and certificate.
const SELF_CHECK_EVERY: Duration = Duration::from_secs(60);

/// A member silent this long gets a "down" alert.
const RAISE_AFTER: Duration = Duration::from_secs(6);

/// A certificate closer than this to its expiry raises an alert.
const CERT_WARN_BEFORE_SECS: i64 = 30 * 24 * 3600;

async fn raise(node: &Node, alerts: Vec<AlertRaise>) -> bool {
    let request_id = RequestId(format!("alerts/{}/{}", node.id, uuid::Uuid::new_v4()));
    let deadline = Instant::now() + Duration::from_secs(10);
    match node
        .write(
            node_identity(node.id),
            request_id,
            Op::RaiseAlerts { alerts },
            deadline,
        )
        .await
    {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!("raising alerts failed: {}", e.message());
            false
        }
    }
}

fn member_alert(id: u64, down: bool) -> AlertRaise {
    AlertRaise {
        severity: Severity::Alarm,
        alert_type: types::MEMBER_DOWN,
        resource: ResourceKind::Node,
        resource_id: id.to_string(),
        message: if down {
            format!("Member {id} is down: it has not answered its peers")
        } else {
            format!("Member {id} is back")
        },
        unique_tag: String::new(),
        clear: !down,
    }
}

/// On the leader: raises an alert when a registered member goes down, and clears it when the
/// member is back. A new leader starts from the stored alerts, so nothing is raised twice.
pub async fn member_alerts(node: Arc<Node>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if node.current_leader() != Some(node.id) {
            continue;
        }
        let changes: Vec<AlertRaise> = {
            let state = node.state.read().unwrap_or_else(|p| p.into_inner());
            let raised: BTreeSet<String> = state
                .alerts()
                .filter(|a| a.alert_type == types::MEMBER_DOWN && !a.cleared)
                .map(|a| a.resource_id.clone())
                .collect();
            state
                .nodes()
                .map(|n| n.id.0)
                .filter(|id| *id != node.id && !state.is_retired(custos_model::NodeId(*id)))
                .filter_map(|id| {
                    // Hysteresis: raised after a longer silence than a member needs to count
                    // as down, cleared once it answers again, so a busy member does not flap.
                    let silent = node.liveness.silent_for(id);
                    let alerted = raised.contains(&id.to_string());
                    if !alerted && silent >= RAISE_AFTER {
                        Some(member_alert(id, true))
                    } else if alerted && silent < DOWN_AFTER {
                        Some(member_alert(id, false))
                    } else {
                        None
                    }
                })
                .take(custos_model::alert::MAX_RAISE)
                .collect()
        };
        if !changes.is_empty() {
            raise(&node, changes).await;
        }
    }
}

/// The seconds until this member's certificate expires, if it has one that parses.
fn cert_seconds_left(node: &Node) -> Option<(i64, i64)> {
    let tls = node.config.tls.as_ref()?;
    let certs = crate::tls::read_certs(&tls.cert_file).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(certs.first()?).ok()?;
    let not_after = cert.validity().not_after.timestamp();
    let now = (crate::node::now_ms() / 1000) as i64;
    Some((not_after - now, not_after))
}

/// On every member: checks its own audit chain (incremental verify) and its certificate's
/// expiry once a minute, and raises an alert about itself when either is wrong. One alert a
/// day at most for the certificate (the alert's count tells how long it has been going on).
pub async fn self_checks(node: Arc<Node>) {
    let mut tick = tokio::time::interval(SELF_CHECK_EVERY);
    let mut cert_raised: Option<Instant> = None;
    let mut chain_raised = false;
    loop {
        tick.tick().await;
        let mut alerts = Vec::new();
        if let Some((left, not_after)) = cert_seconds_left(&node) {
            let due = cert_raised.is_none_or(|t| t.elapsed() >= Duration::from_secs(24 * 3600));
            if left < CERT_WARN_BEFORE_SECS && due {
                alerts.push(AlertRaise {
                    severity: if left <= 0 {
                        Severity::Alarm
                    } else {
                        Severity::Warning
                    },
                    alert_type: types::CERTIFICATE_EXPIRING,
                    resource: ResourceKind::Node,
                    resource_id: node.id.to_string(),
                    message: format!(
                        "The TLS certificate of member {} expires in {} days (at {} UTC)",
                        node.id,
                        left / 86_400,
                        custos_model::revocation::utc_text(not_after.max(0) as u64)
                    ),
                    unique_tag: String::new(),
                    clear: false,
                });
            }
        }
        let log = node.audit.log.clone();
        let verdict = tokio::task::spawn_blocking(move || log.verify(None)).await;
        if let Ok(Ok(v)) = verdict {
            if let Some(error) = v.error {
                if !chain_raised {
                    alerts.push(AlertRaise {
                        severity: Severity::Alarm,
                        alert_type: types::AUDIT_CHAIN_MISMATCH,
                        resource: ResourceKind::Node,
                        resource_id: node.id.to_string(),
                        message: format!(
                            "The audit chain of member {} does not verify: {error}",
                            node.id
                        ),
                        unique_tag: String::new(),
                        clear: false,
                    });
                }
            }
        }
        if alerts.is_empty() {
            continue;
        }
        let cert = alerts
            .iter()
            .any(|a| a.alert_type == types::CERTIFICATE_EXPIRING);
        let chain = alerts
            .iter()
            .any(|a| a.alert_type == types::AUDIT_CHAIN_MISMATCH);
        if raise(&node, alerts).await {
            if cert {
                cert_raised = Some(Instant::now());
            }
            chain_raised |= chain;
        }
    }
}
