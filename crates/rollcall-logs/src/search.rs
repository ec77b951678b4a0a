//! Running a query against the store off the async threads: one page
//! ([`find`], what `GET /v1/logs` answers), or page after page within a
//! time ([`search`], what the explorer shows). An empty result says why it is
//! empty, once.

use std::time::Duration;

use crate::error::LogError;
use crate::query::{Page, Query};
use crate::state::AppState;

/// One page, within the service's scan budget.
async fn page(state: &AppState, mut query: Query) -> Result<Page, LogError> {
    query.scan_budget = state.config.scan_budget.max(1);
    off_thread(state, query).await
}

/// Runs `query` as it is on a blocking thread (reading segments blocks).
pub(crate) async fn off_thread(state: &AppState, query: Query) -> Result<Page, LogError> {
    let store = state.store.clone();
    let turn = store.read_turn().await;
    match tokio::task::spawn_blocking(move || {
        let _turn = turn;
        store.query_blocking(&query)
    })
    .await
    {
        Ok(page) => page.map_err(|e| LogError::Store(e.into())),
        Err(e) => {
            tracing::error!(error = %e, "a log query's task failed");
            Err(LogError::Internal)
        }
    }
}

/// An empty result for a service with no records says so.
fn explained(state: &AppState, query: &Query, mut found: Page) -> Page {
    if found.records.is_empty() {
        found.explain_empty(&query.filter, state.store.services());
    }
    found
}

/// One page of `query` (the API's).
pub(crate) async fn find(state: &AppState, query: Query) -> Result<Page, LogError> {
    let found = page(state, query.clone()).await?;
    Ok(explained(state, &query, found))
}

/// Runs `query` page after page until `query.limit` records are found, the
/// store is searched to its end, or `deadline` has passed; the result counts
/// everything scanned and goes on (`next_cursor`) from where it stopped.
pub(crate) async fn search(
    state: &AppState,
    query: Query,
    deadline: Duration,
) -> Result<Page, LogError> {
    let started = std::time::Instant::now();
    let mut next = query.clone();
    let mut found = Page::default();
    loop {
        let one = page(state, next.clone()).await?;
        found.records.extend(one.records);
        found.scanned_records += one.scanned_records;
        found.scanned_bytes += one.scanned_bytes;
        found.next_cursor = one.next_cursor;
        found.reached_end = one.reached_end;
        let Some(cursor) = one.next_cursor else {
            break;
        };
        if found.records.len() >= query.limit || started.elapsed() >= deadline {
            break;
        }
        next.cursor = Some(cursor);
        next.limit = query.limit - found.records.len();
    }
    Ok(explained(state, &query, found))
}
