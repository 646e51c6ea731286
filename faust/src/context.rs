//! The worker context: what one running worker owns that user code reaches without
//! being handed it: its producer and agent names (for [`crate::send`]), its tables, its
//! clock and whether it leads its group. The runtime runs agents, tasks, timers, window
//! callbacks and commands inside it (a tokio task-local), so a `static X: Table<K, V>`
//! resolves to the state of the worker that runs the code, and two workers in one
//! process (or two tests in parallel) each see their own.

use std::{
    cell::RefCell,
    collections::HashMap,
    future::Future,
    sync::{Arc, OnceLock},
};

use axum::{
    extract::{Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Router,
};
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    config::Config,
    error::{Error, Result},
    leader::Leadership,
    tables::manager::TableManager,
    time::{self, Clock},
    transport::{channel::Channels, producer::Producer, replies::ReplyTopic},
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
    /// The app's in-memory channels, once the agents reading them started (none in
    /// commands).
    pub(crate) channels: OnceLock<Channels>,
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

    /// The app's channels, if `name` is one of them; an error if it is but they are not
    /// running here (a command, or a service starting before the agents).
    pub(crate) fn channel(&self, name: &str) -> Result<Option<&Channels>> {
        if !self.config.channels.iter().any(|c| c == name) {
            return Ok(None);
        }
        match self.channels.get() {
            Some(channels) => Ok(Some(channels)),
            None => Err(Error::Send(format!(
                "'{name}' is an in-memory channel: its agents run inside the worker, so it \
                 takes values only there, once the agents have started (not from commands, \
                 nor from a service's on_start)"
            ))),
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

/// Where a worker is in its life, for [`WorkerHandle`]s.
#[derive(Clone, Default)]
pub(crate) enum Attached {
    /// Not started yet, or starting.
    #[default]
    Starting,
    Running(Arc<WorkerContext>),
    /// Stopped, or failed to start.
    Stopped,
}

/// A way into a worker for code that runs outside it: your own web server, or any
/// task of a program that runs a [`crate::Worker`] beside other things (Python Faust's
/// app inside a FastAPI server). Code run through it sees the worker's tables,
/// `faust::send` and asks, as an agent or a page does. Get one with
/// [`crate::Worker::handle`] before running the worker (or from a test context);
/// clones share it.
///
/// ```no_run
/// use faust::axum::{routing::get, Router};
///
/// async fn produce() -> &'static str {
///     match faust::send("greetings", None::<&str>, "hello").await {
///         Ok(_) => "sent",
///         Err(_) => "not sent",
///     }
/// }
///
/// # async fn demo() -> faust::Result<()> {
/// let worker = faust::Worker::new(faust::App::builder("demo").build()?);
/// let api: Router = worker.handle().inside(Router::new().route("/produce", get(produce)));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WorkerHandle {
    state: watch::Receiver<Attached>,
}

impl WorkerHandle {
    pub(crate) fn new(state: watch::Receiver<Attached>) -> WorkerHandle {
        WorkerHandle { state }
    }

    /// Runs `future` inside the worker, once the worker has started (its producer and
    /// tables exist; a table's keys are there once its partitions are recovered).
    /// Fails with [`Error::Worker`] when the worker has stopped or failed to start.
    pub async fn run<F: Future>(&self, future: F) -> Result<F::Output> {
        let mut state = self.state.clone();
        let running = match state.wait_for(|s| !matches!(s, Attached::Starting)).await {
            Ok(state) => match &*state {
                Attached::Running(worker) => Some(worker.clone()),
                _ => None,
            },
            Err(_) => None, // the worker was dropped without running
        };
        match running {
            Some(worker) => Ok(worker.scope(future).await),
            None => Err(Error::Worker(
                "the worker is not running: it stopped or failed to start (its error says why)"
                    .into(),
            )),
        }
    }

    /// `router` with every handler run inside the worker (as by [`WorkerHandle::run`]):
    /// a request waits while the worker starts (recovery included), and is answered 503
    /// once the worker has stopped or failed to start.
    pub fn inside<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        router.layer(middleware::from_fn_with_state(self.clone(), run_inside))
    }
}

async fn run_inside(State(handle): State<WorkerHandle>, request: Request, next: Next) -> Response {
    match handle.run(next.run(request)).await {
        Ok(response) => response,
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
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
            channels: Default::default(),
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

    #[tokio::test]
    async fn a_handle_waits_for_its_worker_runs_code_inside_it_and_refuses_once_it_stopped() {
        let clock = Clock::adjustable();
        clock.advance(3_600_000);
        let worker = worker(clock.clone());
        let attached = watch::Sender::new(Attached::Starting);
        let handle = WorkerHandle::new(attached.subscribe());
        let waiting = tokio::spawn({
            let handle = handle.clone();
            async move { handle.run(async { now_ms() }).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "it waits while the worker starts");
        attached.send_replace(Attached::Running(worker));
        let now = waiting.await.unwrap().unwrap();
        assert_eq!(now, clock.now_ms(), "it ran on the worker's clock");

        use tower::ServiceExt as _;
        let api = handle.inside(Router::new().route(
            "/now",
            axum::routing::get(|| async { now_ms().to_string() }),
        ));
        let get = || {
            Request::builder()
                .uri("/now")
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let response = api.clone().oneshot(get()).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), 100)
            .await
            .unwrap();
        assert_eq!(body, clock.now_ms().to_string().as_bytes());

        attached.send_replace(Attached::Stopped);
        let error = handle.run(async {}).await.unwrap_err().to_string();
        assert!(error.contains("not running"), "{error}");
        let response = api.oneshot(get()).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(attached);
    }

    #[test]
    fn a_channel_is_refused_where_its_agents_do_not_run() {
        let mut config = Config::new("app");
        config.channels = vec!["actions".into()];
        let mut context = Arc::try_unwrap(worker(Clock::system())).ok().unwrap();
        context.config = Arc::new(config);
        assert!(context.channel("orders").unwrap().is_none(), "a topic");
        let error = context.channel("actions").err().unwrap().to_string();
        assert!(
            error.contains("'actions' is an in-memory channel"),
            "{error}"
        );
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
