//! The worker context: what one running worker owns that user code reaches without
//! being handed it: its producer and agent names (for [`crate::send`]), its tables, its
//! clock and whether it leads its group. The runtime runs agents, tasks, timers, window
//! callbacks and commands inside it (a tokio task-local), so a `static X: Table<K, V>`
//! resolves to the state of the worker that runs the code, and two workers in one
//! process (or two tests in parallel) each see their own.

use std::{cell::RefCell, collections::HashMap, future::Future, sync::Arc};

use tokio::task::JoinHandle;

use crate::{
    config::Config,
    leader::Leadership,
    tables::manager::TableManager,
    time::{self, Clock},
    transport::{producer::Producer, replies::ReplyTopic},
};

/// Everything a running worker lends to the code it runs.
pub(crate) struct WorkerContext {
    /// The app's settings, as the worker started with them.
    pub(crate) config: Arc<Config>,
    pub(crate) producer: Producer,
    /// Agent name -> the topic it consumes (what sending to an agent's name means).
    pub(crate) agents: HashMap<String, Arc<str>>,
    /// `None` in commands, which run without tables.
    pub(crate) tables: Option<Arc<TableManager>>,
    pub(crate) clock: Clock,
    pub(crate) leader: Leadership,
    /// The reply topic of the agents this worker asks (agent RPC).
    pub(crate) replies: Arc<ReplyTopic>,
}

tokio::task_local! {
    static WORKER: Arc<WorkerContext>;
}

thread_local! {
    /// Contexts entered on this thread outside any task of theirs: a test's body, which
    /// reads tables between sends. The innermost is last.
    static ENTERED: RefCell<Vec<Arc<WorkerContext>>> = const { RefCell::new(Vec::new()) };
}

/// The context of the worker the caller runs in, if any.
pub(crate) fn current() -> Option<Arc<WorkerContext>> {
    WORKER
        .try_with(Arc::clone)
        .ok()
        .or_else(|| ENTERED.with(|entered| entered.borrow().last().cloned()))
}

impl WorkerContext {
    /// Runs `future` inside this context.
    pub(crate) fn scope<F: Future>(self: &Arc<Self>, future: F) -> impl Future<Output = F::Output> {
        WORKER.scope(self.clone(), future)
    }

    /// Spawns `future` as a task inside this context.
    pub(crate) fn spawn<F>(self: &Arc<Self>, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        tokio::spawn(self.scope(future))
    }

    #[cfg(any(test, feature = "testing"))]
    /// Makes this the context of code on this thread that runs in no task of a worker,
    /// until the guard is dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> Entered {
        ENTERED.with(|entered| entered.borrow_mut().push(self.clone()));
        Entered {
            context: Arc::downgrade(self),
            _not_send: std::marker::PhantomData,
        }
    }

    /// An agent's name stands for the topic it consumes; anything else is a topic name.
    pub(crate) fn topic(&self, target: &str) -> Arc<str> {
        self.agents
            .get(target)
            .map_or_else(|| Arc::from(target), Arc::clone)
    }
}

#[cfg(any(test, feature = "testing"))]
/// Leaves an entered context when dropped (on the thread that entered it).
pub(crate) struct Entered {
    context: std::sync::Weak<WorkerContext>,
    _not_send: std::marker::PhantomData<*const ()>,
}

#[cfg(any(test, feature = "testing"))]
impl Drop for Entered {
    fn drop(&mut self) {
        ENTERED.with(|entered| {
            let mut entered = entered.borrow_mut();
            if let Some(at) = entered
                .iter()
                .rposition(|c| std::ptr::eq(Arc::as_ptr(c), self.context.as_ptr()))
            {
                entered.remove(at);
            }
        });
    }
}

/// Spawns `future` as a tokio task that keeps the calling worker: in it, tables, `send`,
/// the clock and `is_leader` are the worker's, as in the agent or task that spawned it
/// (a plain `tokio::spawn` leaves the worker behind). Outside a worker it is
/// `tokio::spawn`.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match current() {
        Some(worker) => worker.spawn(future),
        None => tokio::spawn(future),
    }
}

/// Milliseconds since the Unix epoch on the worker's clock: the system's, or in a test
/// context the one the test moves with `advance`.
pub fn now_ms() -> i64 {
    current().map_or_else(time::system_now_ms, |worker| worker.clock.now_ms())
}

/// The settings of the worker running the caller (`None` outside one): its app id,
/// broker, datadir and so on, after environment variables and flags.
pub fn config() -> Option<Arc<Config>> {
    current().map(|worker| worker.config.clone())
}

/// Whether the worker running the caller is its group's leader now (tasks and timers
/// with `on_leader = true` run only there).
pub fn is_leader() -> bool {
    current().is_some_and(|worker| worker.leader.is_leader())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        sensors::{Monitor, Sensors},
        transport::memory::MemoryLog,
    };

    fn worker(clock: Clock) -> Arc<WorkerContext> {
        let sensors = Sensors::new(Arc::new(Monitor::default()), &[]);
        let log = Arc::new(MemoryLog::new(1, clock.clone()));
        Arc::new(WorkerContext {
            config: Arc::new(Config::new("app")),
            producer: Producer::in_memory(log, sensors),
            agents: HashMap::new(),
            tables: None,
            replies: ReplyTopic::handed(&Config::new("app")),
            clock,
            leader: Leadership::default(),
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spawn_keeps_the_worker_and_a_plain_task_does_not() {
        let clock = Clock::adjustable();
        clock.advance(3_600_000);
        let worker = worker(clock);
        let ahead = |now: i64| now > time::system_now_ms() + 3_000_000;
        let (kept, plain) = worker
            .scope(async {
                let kept = spawn(async { now_ms() });
                let plain = tokio::spawn(async { (now_ms(), current().is_some()) });
                (kept.await.unwrap(), plain.await.unwrap())
            })
            .await;
        assert!(ahead(kept), "faust::spawn runs on the worker's clock");
        assert!(
            !ahead(plain.0) && !plain.1,
            "tokio::spawn leaves the worker"
        );
        assert!(current().is_none(), "outside the scope there is none");
    }

    #[test]
    fn an_entered_context_is_left_when_its_guard_drops() {
        let (a, b) = (worker(Clock::system()), worker(Clock::system()));
        let entered_a = a.enter();
        {
            let _entered_b = b.enter();
            assert!(Arc::ptr_eq(&current().unwrap(), &b));
        }
        assert!(Arc::ptr_eq(&current().unwrap(), &a));
        drop(entered_a);
        assert!(current().is_none());
    }
}
