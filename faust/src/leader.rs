//! Leader election on Kafka itself, as Python Faust does it: every worker subscribes to
//! the one-partition topic `{app_id}-__assignor-__leader`, and the group assigns that
//! partition to one member, the leader. When it leaves, the next rebalance gives the
//! partition, and the leadership, to another worker. Nothing is ever written there.

use tokio::sync::watch;
use tracing::info;

/// Whether this worker leads its group; the consumer sets it, tasks and timers read it.
/// Clones share it.
#[derive(Debug, Clone)]
pub(crate) struct Leadership(watch::Sender<bool>);

impl Default for Leadership {
    fn default() -> Self {
        Leadership(watch::channel(false).0)
    }
}

impl Leadership {
    pub(crate) fn is_leader(&self) -> bool {
        *self.0.borrow()
    }

    /// The consumer took or gave up the leader partition.
    pub(crate) fn set(&self, leader: bool) {
        let changed = self
            .0
            .send_if_modified(|current| std::mem::replace(current, leader) != leader);
        if changed && leader {
            info!("this worker is now the leader");
        } else if changed {
            info!("this worker is no longer the leader");
        }
    }

    /// Waits until this worker is not the leader.
    pub(crate) async fn lost(&self) {
        let _ = self.0.subscribe().wait_for(|l| !*l).await;
    }

    /// Waits until this worker is the leader.
    pub(crate) async fn gained(&self) {
        let _ = self.0.subscribe().wait_for(|l| *l).await;
    }
}

/// The topic whose one partition makes its holder the leader.
pub(crate) fn topic(app_id: &str) -> String {
    format!("{app_id}-__assignor-__leader")
}
