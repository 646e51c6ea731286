//! The worker's web server (axum): `/health`, `/metrics` (Prometheus), `/stats` (JSON),
//! `/tables/{table}/{key}`, `/assignment` and a status page at `/`.
//!
//! A table lookup is answered by the worker that holds the key's partition; any other
//! worker redirects (307) to it, found through the directory of announcements. Only
//! tables declared with `web = true` or listed in `web_tables` are served, and with a
//! `web_token` everything but `/health` and `/metrics` wants it as a bearer token. With
//! `web_tls` it serves HTTPS, and with a client CA it wants a client certificate for
//! all but those two as well. The app's own pages (`#[faust::page]`) are served beside
//! these, under the same rules, with [`table_route`] for those answering about a table.

mod directory;
mod pages;
mod tls;

pub use pages::table_route;

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    sync::Arc,
};

use axum::{
    extract::{ConnectInfo, Path, Query, Request, State},
    http::{header, HeaderMap, StatusCode, Uri},
    middleware::{self, Next},
    response::{Html, IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::{
    agents::AgentDescriptor,
    config::{Config, Secret},
    context::WorkerContext,
    descriptor::PageDescriptor,
    sensors::{prometheus_text, Monitor, Phase, Stats},
    tables::{Lookup, TableManager},
    transport::connection::Connection,
    Error, Result,
};
use directory::{Directory, DirectoryService};
use tls::{Peer, TlsListener};

const STATUS_PAGE: &str = include_str!("status.html");

/// Where workers announce their web address and the table partitions they hold.
pub(crate) fn directory_topic(app_id: &str) -> String {
    format!("{app_id}-__web-directory")
}

/// The longest key a table lookup takes, in bytes.
const MAX_KEY_BYTES: usize = 4096;

struct Shared {
    /// Tables served besides those declared with `web = true`.
    web_tables: HashSet<String>,
    token: Option<Secret>,
    /// Requests other than probes' must come over a connection with a client
    /// certificate the web CA signed.
    certificate_required: bool,
    app_id: String,
    url: String,
    agents: Vec<AgentInfo>,
    monitor: Arc<Monitor>,
    tables: Arc<TableManager>,
    directory: Arc<Directory>,
}

#[derive(Debug, Clone, Serialize)]
struct AgentInfo {
    name: &'static str,
    topics: Vec<String>,
    concurrency: usize,
}

/// The running web server and its directory.
pub(crate) struct WebServer {
    url: String,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
    directory: DirectoryService,
}

impl WebServer {
    /// Binds `web_bind:web_port` (failing at once if it cannot) and starts serving.
    pub(crate) async fn start(
        config: &Config,
        (agents, pages): (&[&'static AgentDescriptor], &[&'static PageDescriptor]),
        connection: &Connection,
        monitor: Arc<Monitor>,
        worker: Arc<WorkerContext>,
        tables: Arc<TableManager>,
    ) -> Result<WebServer> {
        for table in &config.web_tables {
            if tables.table(table).is_err() {
                return Err(Error::Config(format!(
                    "the web tables (--web-tables, FAUST_WEB_TABLES) name '{table}', which is \
                     not a table of this app"
                )));
            }
        }
        // Before anything starts: a page that cannot be served stops the worker here.
        pages::check(pages)?;
        let listener = bind(config).await?;
        let acceptor = config.web_tls.as_ref().map(tls::acceptor).transpose()?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::Io {
                context: "reading the web server's address".into(),
                source: e,
            })?
            .port();
        let scheme = if config.web_tls.is_some() {
            "https"
        } else {
            "http"
        };
        let url = format!("{scheme}://{}:{port}", config.web_host);
        let directory = DirectoryService::start(
            connection,
            directory_topic(&config.id),
            url.clone(),
            tables.clone(),
            worker.producer.clone(),
        )?;
        let shared = Arc::new(Shared {
            web_tables: config.web_tables.iter().cloned().collect(),
            token: config.web_token.clone(),
            certificate_required: config
                .web_tls
                .as_ref()
                .is_some_and(|t| t.client_ca.is_some()),
            app_id: config.id.clone(),
            url: url.clone(),
            agents: agents
                .iter()
                .map(|a| AgentInfo {
                    name: a.name,
                    topics: a.source_topics(&config.id),
                    concurrency: a.concurrency.max(1),
                })
                .collect(),
            monitor,
            tables,
            directory: directory.directory.clone(),
        });
        let own_pages = pages::router(pages, worker, shared.clone());
        let guarded = Router::new()
            .route("/", get(status_page))
            .route("/stats", get(stats))
            .route("/assignment", get(assignment))
            .route("/tables/{table}/{key}", get(table_lookup))
            .with_state(shared.clone())
            .merge(own_pages)
            .route_layer(middleware::from_fn_with_state(
                shared.clone(),
                require_credentials,
            ));
        // Probes and scrapers need no token.
        let router = Router::new()
            .route("/health", get(health))
            .route("/metrics", get(metrics))
            .with_state(shared)
            .merge(guarded);
        let router = router.into_make_service_with_connect_info::<Peer>();
        let (stop, stopped) = oneshot::channel();
        let stopped = async {
            let _ = stopped.await;
        };
        let server = match acceptor {
            None => tokio::spawn(async move {
                let serve = axum::serve(listener, router).with_graceful_shutdown(stopped);
                report_stop(serve.await);
            }),
            Some(acceptor) => {
                let listener = TlsListener::new(listener, acceptor)?;
                tokio::spawn(async move {
                    let serve = axum::serve(listener, router).with_graceful_shutdown(stopped);
                    report_stop(serve.await);
                })
            }
        };
        info!(%url, bind = %config.web_bind, "web server listening");
        Ok(WebServer {
            url,
            stop,
            server,
            directory,
        })
    }

    /// What standbys are placed from: the directory's claims, and this worker's key in
    /// it (its URL).
    pub(crate) fn claims(&self) -> (crate::tables::Claims, String) {
        let directory = self.directory.directory.clone();
        (Arc::new(move || directory.claims()), self.url.clone())
    }

    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
        let directory = self.directory;
        let _ = tokio::task::spawn_blocking(move || directory.stop()).await;
    }
}

fn report_stop(served: std::io::Result<()>) {
    if let Err(e) = served {
        warn!(error = %e, "the web server stopped");
    }
}

async fn bind(config: &Config) -> Result<tokio::net::TcpListener> {
    let ip = config
        .web_bind
        .parse()
        .map_err(|_| Error::Config(format!("'{}' is not an IP address", config.web_bind)))?;
    let address = SocketAddr::new(ip, config.web_port);
    tokio::net::TcpListener::bind(address).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (is another worker running on this machine? give each its own --web-port, \
             0 picks a free one, or run with --without-web)"
        } else {
            ""
        };
        Error::Config(format!(
            "the web server cannot listen on {address}: {e}{hint}"
        ))
    })
}

async fn status_page() -> Html<&'static str> {
    Html(STATUS_PAGE)
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let stats = shared.monitor.stats();
    let (code, status) = match stats.phase {
        Phase::Ready => (StatusCode::OK, "ready"),
        Phase::Stopping => (StatusCode::SERVICE_UNAVAILABLE, "stopping"),
        Phase::Starting if stats.recovery.iter().any(|r| !r.done) => {
            (StatusCode::SERVICE_UNAVAILABLE, "recovering")
        }
        Phase::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
    };
    let body = serde_json::json!({ "status": status, "ready": stats.ready });
    (code, Json(body)).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        prometheus_text(&shared.monitor.stats()),
    )
        .into_response()
}

#[derive(Serialize)]
struct StatsBody<'a> {
    app: &'a str,
    url: &'a str,
    agents_running: &'a [AgentInfo],
    #[serde(flatten)]
    stats: Stats,
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    Json(StatsBody {
        app: &shared.app_id,
        url: &shared.url,
        agents_running: &shared.agents,
        stats: shared.monitor.stats(),
    })
    .into_response()
}

#[derive(Serialize)]
struct AssignmentBody {
    topics: BTreeMap<String, Vec<i32>>,
    tables: BTreeMap<&'static str, Vec<i32>>,
}

async fn assignment(State(shared): State<Arc<Shared>>) -> Json<AssignmentBody> {
    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for p in shared
        .monitor
        .stats()
        .partitions
        .into_iter()
        .filter(|p| p.assigned)
    {
        topics.entry(p.topic).or_default().push(p.partition);
    }
    Json(AssignmentBody {
        topics,
        tables: shared.tables.assignment(),
    })
}

/// Lets a request through when no token is set or it carries `Bearer {token}`.
/// Lets through requests that bring what this server wants: a client certificate (on
/// the connection) and a bearer token, when it wants them.
async fn require_credentials(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    if shared.certificate_required && !peer.certified {
        let error = "this worker wants a client certificate signed by its web CA";
        return (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({ "error": error })),
        )
            .into_response();
    }
    let Some(token) = &shared.token else {
        return next.run(request).await;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if same_secret(given.as_bytes(), token.expose().as_bytes()) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(serde_json::json!({ "error": "this worker wants a bearer token (Authorization: Bearer ...)" })),
    )
        .into_response()
}

/// Compares in time that depends on the lengths only, not on where they differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
}

#[derive(Deserialize)]
struct LookupQuery {
    /// Set on redirects: the receiver answers itself rather than redirect again.
    #[serde(default)]
    forwarded: bool,
}

/// The answer for a request about `partition` of `table`, which this worker does not
/// hold: a redirect (307) to the same path and query on the worker that holds it, or,
/// when none is known or the request was redirected here already, 503.
fn to_owner(shared: &Shared, table: &str, partition: i32, uri: &Uri, forwarded: bool) -> Response {
    let owner = shared
        .directory
        .owner(table, partition)
        .filter(|owner| *owner != shared.url);
    let problem = match owner {
        Some(owner) if !forwarded => {
            let query = uri.query().map_or(String::new(), |q| format!("{q}&"));
            let location = format!("{owner}{}?{query}forwarded=true", uri.path());
            return (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
            )
                .into_response();
        }
        Some(_) => format!(
            "partition {partition} of table '{table}' is moving between workers \
             (this request was redirected here); retry shortly"
        ),
        None => format!(
            "partition {partition} of table '{table}' is not held by this worker and \
             no other worker claims it yet (a rebalance may be under way); retry shortly"
        ),
    };
    let body = Json(serde_json::json!({ "error": problem }));
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

async fn table_lookup(
    State(shared): State<Arc<Shared>>,
    Path((table, key)): Path<(String, String)>,
    Query(query): Query<LookupQuery>,
    uri: Uri,
) -> Response {
    let error = |code: StatusCode, message: String| {
        (code, Json(serde_json::json!({ "error": message }))).into_response()
    };
    // A table that exists but is not served looks like one that does not exist.
    let served = shared
        .tables
        .table(&table)
        .is_ok_and(|t| t.descriptor.web || shared.web_tables.contains(&table));
    if !served {
        return error(
            StatusCode::NOT_FOUND,
            format!("no table named '{table}' is served here"),
        );
    }
    if key.len() > MAX_KEY_BYTES {
        return error(
            StatusCode::URI_TOO_LONG,
            format!("the key is longer than {MAX_KEY_BYTES} bytes"),
        );
    }
    let tables = shared.tables.clone();
    let (name, text) = (table.clone(), key.clone());
    // Store reads touch the disk: off the async threads.
    let found = tokio::task::spawn_blocking(move || tables.lookup(&name, &text)).await;
    match found {
        Ok(Ok(Lookup::Found(value))) => {
            ([(header::CONTENT_TYPE, "application/json")], value).into_response()
        }
        Ok(Ok(Lookup::Missing)) => error(
            StatusCode::NOT_FOUND,
            format!("table '{table}' has no key {key}"),
        ),
        Ok(Ok(Lookup::Elsewhere { partition })) => {
            to_owner(&shared, &table, partition, &uri, query.forwarded)
        }
        Ok(Err(Error::Config(message))) => error(StatusCode::BAD_REQUEST, message),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
