//! Files a node reads again while it runs (its cookie file, its TLS files):
//! one loop that looks every interval, keeps what it has when the new
//! contents cannot be used, and says so. What changed and how to read it is
//! the caller's `reload`.

use std::time::Duration;

use crate::Result;

/// Calls `reload` every `every` until the returned task is aborted; after
/// `Ok(true)` (new contents taken) calls `changed` (to log it), after an
/// error logs it with `unusable`.
pub fn every(
    every: Duration,
    reload: impl Fn() -> Result<bool> + Send + 'static,
    changed: impl Fn() + Send + 'static,
    unusable: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match reload() {
                Ok(false) => {}
                Ok(true) => changed(),
                Err(e) => tracing::error!(error = %e, "{unusable}"),
            }
        }
    })
}
