//! Leader election on Kafka itself, as Python Faust does it: every worker subscribes to
//! the one-partition topic `{app_id}-__assignor-__leader`, and the group assigns that
//! partition to one member, the leader. When it leaves, the next rebalance gives the
//! partition, and the leadership, to another worker. Nothing is ever written there.

use std::sync::LazyLock;

use tokio::sync::watch;
use tracing::info;

static LEADER: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::channel(false).0);

/// Whether this worker is the group's leader now (timers with `on_leader = true` run
/// only there).
pub fn is_leader() -> bool {
    *LEADER.borrow()
}

/// The topic whose one partition makes its holder the leader.
pub(crate) fn topic(app_id: &str) -> String {
    format!("{app_id}-__assignor-__leader")
}

/// The consumer took or gave up the leader partition.
pub(crate) fn set(leader: bool) {
    let changed = LEADER.send_if_modified(|current| std::mem::replace(current, leader) != leader);
    if changed && leader {
        info!("this worker is now the leader");
    } else if changed {
        info!("this worker is no longer the leader");
    }
}

/// Waits until this worker is not the leader.
pub(crate) async fn lost_leadership() {
    let mut leader = LEADER.subscribe();
    let _ = leader.wait_for(|l| !*l).await;
}

/// Waits until this worker is the leader.
pub(crate) async fn became_leader() {
    let mut leader = LEADER.subscribe();
    let _ = leader.wait_for(|l| *l).await;
}
