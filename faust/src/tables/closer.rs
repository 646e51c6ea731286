//! Closes windowed tables' windows on time: a task per worker takes out the windows
//! whose end plus expiry the partition's stream time passed, hands each final value to
//! `on_window_close`, then deletes the window with a changelog tombstone.

use std::sync::Arc;

use tracing::warn;

use super::{
    state::TableState,
    windows::{self, Closed},
};
use crate::{context, descriptor::WindowSpec, Error};

/// Closes the due windows of every windowed table partition this worker holds, until
/// `stop` turns true (between two windows, never between a callback and its tombstone).
pub(crate) async fn close_windows(
    tables: Vec<Arc<TableState>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let tick = tables
        .iter()
        .filter_map(|t| t.descriptor.window.as_ref().map(WindowSpec::tick))
        .min();
    let Some(tick) = tick else {
        return;
    };
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        for table in &tables {
            close_due(table, &stop).await;
        }
    }
}

/// Closes one table's due windows: the final values go to `on_window_close`, then the
/// windows leave the store and the changelog. A callback that fails is retried at the
/// next tick, so no final value is lost. No partition is held across a callback: one
/// revoked meanwhile is left to its new owner, which recovers and closes its windows.
///
/// `stop` turning true ends this between two windows (shutdown): the windows left are
/// still in the store, and close after the restart.
pub(crate) async fn close_due(table: &TableState, stop: &tokio::sync::watch::Receiver<bool>) {
    let Some(spec) = &table.descriptor.window else {
        return; // not a windowed table
    };
    let partitions: Vec<i32> = table
        .held_partitions()
        .iter()
        .map(|held| held.partition)
        .collect();
    for partition in partitions {
        let Ok(held) = table.held_partition(partition) else {
            continue;
        };
        let caught_up = table.sensors.monitor().caught_up(partition);
        let (closed, time) = windows::final_values(
            table.descriptor.name,
            &held.windows,
            &|key| held.get(key),
            spec,
            caught_up,
            table.clock.now_ms(),
        );
        if closed.is_empty() {
            continue;
        }
        // The partition's stream time goes with its windows, and before any is deleted: a
        // new owner, also after a round stopped halfway, then refuses late events for
        // windows closed here instead of opening them again.
        if let Some(time) = time {
            let time = time.to_string().into_bytes();
            let stored = table.update_in(&held, None, windows::STREAM_TIME_KEY.to_vec(), |_| {
                Ok((Some(time), ()))
            });
            if let Err(e) = stored {
                warn!(table = table.descriptor.name, error = %e, "could not store the stream time");
            }
        }
        // The partition may move, and even come back, during a callback: `held` is this
        // holding of it, told apart from a later one by when it began.
        let holding = held.since;
        drop(held);
        for Closed {
            window,
            key,
            value,
            failures,
        } in closed
        {
            if *stop.borrow() {
                return;
            }
            if let (Some(on_close), Some((user_key, _))) = (spec.on_close, windows::split_key(&key))
            {
                // Spawned, so that a panicking callback is a failure, not a dead closer.
                let outcome = match context::spawn(on_close(user_key.to_vec(), window, value)).await
                {
                    Ok(outcome) => outcome,
                    Err(e) => Err(Error::msg(format!("on_window_close panicked: {e}"))),
                };
                if let Err(e) = outcome {
                    // Tried again later, backing off up to 5 minutes: never given up on.
                    let failures = failures + 1;
                    let delay_ms = 1_000i64 << failures.min(9);
                    let delay_ms = delay_ms.min(300_000);
                    warn!(
                        table = table.descriptor.name,
                        ?window,
                        error = %e,
                        failures,
                        "on_window_close failed; trying again in {} s",
                        delay_ms / 1000
                    );
                    // A later holding rebuilt its own index, with this window in it.
                    if let Some(held) = table
                        .held_partition(partition)
                        .ok()
                        .filter(|h| h.since == holding)
                    {
                        let at = table.clock.now_ms().saturating_add(delay_ms);
                        let mut index = held.windows.lock().unwrap_or_else(|e| e.into_inner());
                        index.retry_later(window, key, failures, at);
                    }
                    continue;
                }
            }
            let Ok(held) = table.held_partition(partition) else {
                break;
            };
            if held.since != holding {
                // Back after a move: its rebuilt index must not close this window again.
                let mut index = held.windows.lock().unwrap_or_else(|e| e.into_inner());
                index.forget(window.start, &key);
            }
            if let Err(e) = table.update_in(&held, None, key, |_| Ok((None, ()))) {
                warn!(table = table.descriptor.name, ?window, error = %e, "could not remove a closed window");
            }
        }
    }
}
