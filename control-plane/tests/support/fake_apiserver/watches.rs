//! WATCH: newline-delimited events from a resourceVersion, with bookmarks, selector-aware
//! ADDED/DELETED translation, and streams a test can cut.

use super::*;

/// Translates a change into the event a watcher with `filter` sees, if any.
pub(super) fn watch_event(change: &Change, filter: &Filter) -> Option<Value> {
    let old_match = change.old.as_ref().is_some_and(|o| filter.matches(o));
    let new_match = change.new.as_ref().is_some_and(|n| filter.matches(n));
    let (type_, obj) = match (old_match, new_match, &change.new) {
        (_, true, Some(n)) => (if old_match { "MODIFIED" } else { "ADDED" }, n.clone()),
        (true, false, Some(n)) => ("DELETED", n.clone()),
        (true, false, None) => {
            let mut last = change.old.clone()?;
            last["metadata"]["resourceVersion"] = json!(change.rv.to_string());
            ("DELETED", last)
        }
        _ => return None,
    };
    Some(json!({"type": type_, "object": obj}))
}

pub(super) fn line(v: &Value) -> Result<Bytes, Infallible> {
    let mut s = v.to_string();
    s.push('\n');
    Ok(Bytes::from(s))
}

pub(super) fn watch_response(
    shared: &Arc<Shared>,
    target: &Target,
    filter: Filter,
    since: u64,
    timeout_secs: u64,
    kind: Kind,
) -> Response {
    let resource = target.resource();
    let api_version = target.api_version.clone();
    // Subscribe and snapshot under the store lock so no change is missed or sent twice.
    let (mut live, backlog, mut last_rv) = {
        let store = shared.lock();
        let live = shared.changes.subscribe();
        let backlog: Vec<Change> = if since == 0 {
            // "Any" version: synthesize ADDED events for the current state.
            store
                .objects
                .iter()
                .filter(|((r, _, _), _)| *r == resource)
                .map(|(_, o)| Change {
                    rv: store.rv,
                    resource: resource.clone(),
                    namespace: String::new(),
                    old: None,
                    new: Some(o.clone()),
                })
                .collect()
        } else {
            store
                .log
                .iter()
                .filter(|c| c.rv > since && c.resource == resource)
                .cloned()
                .collect()
        };
        (live, backlog, store.rv.max(since))
    };
    let mut cut = shared.cut.subscribe();
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        for change in &backlog {
            if let Some(ev) = watch_event(change, &filter)
                && tx.send(line(&ev)).await.is_err()
            {
                return;
            }
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout_secs));
        tokio::pin!(deadline);
        let mut bookmark = tokio::time::interval(Duration::from_millis(500));
        bookmark.tick().await;
        loop {
            tokio::select! {
                () = &mut deadline => return,
                _ = cut.changed() => return,
                _ = bookmark.tick() => {
                    let ev = json!({"type": "BOOKMARK", "object": {
                        "apiVersion": api_version, "kind": kind.kind,
                        "metadata": {"resourceVersion": last_rv.to_string()},
                    }});
                    if tx.send(line(&ev)).await.is_err() {
                        return;
                    }
                }
                change = live.recv() => match change {
                    Ok(change) => {
                        if change.resource != resource {
                            continue;
                        }
                        last_rv = change.rv;
                        if let Some(ev) = watch_event(&change, &filter)
                            && tx.send(line(&ev)).await.is_err()
                        {
                            return;
                        }
                    }
                    // A lagging watcher is cut, as the API server does; it re-watches.
                    Err(_) => return,
                },
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
