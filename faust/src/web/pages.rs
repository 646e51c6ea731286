//! The app's own pages (`#[faust::page]`), served beside the worker's, and
//! [`table_route`] for pages that answer about a table's keys.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{StatusCode, Uri},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Json, Router,
};
use serde::Serialize;

use super::Shared;
use crate::{context::WorkerContext, descriptor::PageDescriptor, Error, Result};

tokio::task_local! {
    /// The server the page being answered runs in (for `table_route`).
    static SERVER: Arc<Shared>;
}

/// Paths the worker serves itself.
const BUILT_IN: &[&str] = &[
    "/",
    "/health",
    "/metrics",
    "/stats",
    "/assignment",
    "/tables/{table}/{key}",
];

/// Whether the pages can be served beside the worker's own routes and each other, as
/// an error naming the first that cannot (axum refuses a clash by panicking).
pub(super) fn check(pages: &[&'static PageDescriptor]) -> Result<()> {
    let mut router = Router::new();
    for path in BUILT_IN {
        router = router.route(path, axum::routing::get(|| async {}));
    }
    for page in pages {
        if BUILT_IN.contains(&page.path) {
            return Err(Error::Config(format!(
                "the page '{}' ({}) has the path of the worker's own {}; give it another",
                page.path, page.location, page.path
            )));
        }
        let routed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (page.route)(router)));
        router = routed.map_err(|panic| {
            Error::Config(format!(
                "the page '{}' ({}, {}) cannot be served: {}",
                page.path,
                page.location,
                page.method.to_uppercase(),
                crate::error::panic_text(panic.as_ref())
            ))
        })?;
    }
    Ok(())
}

/// The pages' router (checked by [`check`] first): each handler runs inside the worker
/// (tables, `send`, asks).
pub(super) fn router(
    pages: &[&'static PageDescriptor],
    worker: Arc<WorkerContext>,
    shared: Arc<Shared>,
) -> Router {
    let mut router = Router::new();
    if pages.is_empty() {
        return router; // (axum refuses a layer over no routes)
    }
    for page in pages {
        router = (page.route)(router);
    }
    router.route_layer(middleware::from_fn_with_state((worker, shared), in_worker))
}

async fn in_worker(
    State((worker, shared)): State<(Arc<WorkerContext>, Arc<Shared>)>,
    request: Request,
    next: Next,
) -> Response {
    worker.scope(SERVER.scope(shared, next.run(request))).await
}

/// For a page that answers about `key` of `table` (Python Faust's `@app.table_route`):
/// `None` when this worker holds the key's partition, so the page answers; otherwise
/// the response to return: a redirect (307) to the same path on the worker that holds
/// it, or 503 while no worker does (a rebalance), or 404 for an unknown table. Outside
/// a page (a test context) it is always `None`.
///
/// ```no_run
/// use faust::axum::{extract::Path, http::Uri, response::{IntoResponse, Response}, Json};
/// use faust::prelude::*;
///
/// #[faust::table(name = "counts", default = 0)]
/// static COUNTS: Table<String, i64>;
///
/// #[faust::page("/count/{word}")]
/// async fn count(Path(word): Path<String>, uri: Uri) -> Response {
///     if let Some(elsewhere) = faust::web::table_route(COUNTS.name(), &word, &uri) {
///         return elsewhere;
///     }
///     Json(COUNTS.get(&word).unwrap_or_default()).into_response()
/// }
/// # faust::main!(id = "demo");
/// ```
pub fn table_route<K: Serialize + ?Sized>(table: &str, key: &K, uri: &Uri) -> Option<Response> {
    let shared = SERVER.try_with(Arc::clone).ok()?;
    let refuse = |code: StatusCode, message: String| {
        Some((code, Json(serde_json::json!({ "error": message }))).into_response())
    };
    let key = match serde_json::to_vec(key) {
        Ok(key) => key,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("the key: {e}")),
    };
    match shared.tables.partition_of(table, &key) {
        Ok((_, true)) => None,
        Ok((partition, false)) => {
            let forwarded = uri
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "forwarded=true"));
            Some(super::to_owner(&shared, table, partition, uri, forwarded))
        }
        Err(_) => refuse(
            StatusCode::NOT_FOUND,
            format!("no table named '{table}' in this app"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(path: &'static str, route: fn(Router) -> Router) -> PageDescriptor {
        PageDescriptor {
            path,
            method: "get",
            location: "here.rs:1",
            route,
        }
    }

    #[test]
    fn pages_that_clash_are_refused_with_their_names() {
        let fine: &'static PageDescriptor = Box::leak(Box::new(page("/count/{word}", |r| {
            r.route("/count/{word}", axum::routing::get(|| async {}))
        })));
        assert!(check(&[fine]).is_ok());
        let built_in = Box::leak(Box::new(page("/stats", |r| r)));
        let error = check(&[built_in]).unwrap_err().to_string();
        assert!(error.contains("the worker's own /stats"), "{error}");
        // Same shape as the worker's table lookups: axum cannot tell them apart.
        let lookalike = Box::leak(Box::new(page("/tables/{name}/{id}", |r| {
            r.route("/tables/{name}/{id}", axum::routing::get(|| async {}))
        })));
        let error = check(&[lookalike]).unwrap_err().to_string();
        assert!(
            error.contains("/tables/{name}/{id}") && error.contains("here.rs:1"),
            "{error}"
        );
        let twice = check(&[fine, fine]).unwrap_err().to_string();
        assert!(twice.contains("cannot be served"), "{twice}");
    }
}
