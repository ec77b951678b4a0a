//! Running a query against the store off the async threads: one page
//! ([`find`], what `GET /v1/logs` answers), or page after page within a
//! time ([`search`], what the explorer shows).

use std::time::Duration;

use crate::error::LogError;
use crate::query::{Page, Query};
use crate::state::AppState;

/// Runs `query` off the async threads (the API's and the explorer's); an
/// empty page says why it is empty.
pub(crate) async fn find(state: &AppState, mut query: Query) -> Result<Page, LogError> {
    query.scan_budget = state.config.scan_budget.max(1);
    let store = state.store.clone();
    let filter = query.filter.clone();
    let mut page = tokio::task::spawn_blocking(move || store.query_blocking(&query))
        .await
        .map_err(|e| LogError::Store(crate::store::StoreError::WriteFailed(e.to_string())))?
        .map_err(|e| LogError::Store(e.into()))?;
    if page.records.is_empty() {
        page.explain_empty(&filter, state.store.services());
    }
    Ok(page)
}

/// Runs `query` page after page until `query.limit` records are found, the
/// store is searched to its end, or `deadline` has passed; the result counts
/// everything scanned and goes on (`next_cursor`) from where it stopped.
pub(crate) async fn search(
    state: &AppState,
    mut query: Query,
    deadline: Duration,
) -> Result<Page, LogError> {
    let started = std::time::Instant::now();
    let limit = query.limit;
    let mut found = Page::default();
    loop {
        let page = find(state, query.clone()).await?;
        found.records.extend(page.records);
        found.scanned_records += page.scanned_records;
        found.scanned_bytes += page.scanned_bytes;
        found.next_cursor = page.next_cursor;
        found.reached_end = page.reached_end;
        if found.note.is_none() {
            (found.note, found.services) = (page.note, page.services);
        }
        let Some(cursor) = page.next_cursor else {
            break;
        };
        if found.records.len() >= limit || started.elapsed() >= deadline {
            break;
        }
        query.cursor = Some(cursor);
        query.limit = limit - found.records.len();
    }
    Ok(found)
}
