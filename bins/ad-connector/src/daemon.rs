//! `run`: cycles on a cron schedule until SIGTERM or Ctrl-C.
//!
//! A signal during a cycle abandons it safely: batches already acknowledged stay recorded,
//! the batch in flight is dropped, and the checkpoint does not move, so the next start
//! re-reads from the last checkpoint and re-sends at most what was not acknowledged.

use ad_sync::{CycleError, CycleRequest};
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::progress::Progress;

/// A token cancelled on the first SIGINT or SIGTERM.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::warn!(
            "stop requested: finishing safely (the current cycle is abandoned, its acknowledged batches are kept)"
        );
        trigger.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Run until stopped.
pub async fn run(config: &Config) -> anyhow::Result<()> {
    let schedule = config.schedule.parsed()?;
    let mut engine = crate::engine(config)?;
    let shutdown = shutdown_token();
    tracing::info!(
        cron = schedule.expression(),
        sink = engine.sink().name(),
        state = %engine.store().path().display(),
        "connector started"
    );
    let mut first = config.schedule.run_at_start;
    loop {
        if !first {
            let Some(next) = schedule.next_after(Utc::now()) else {
                anyhow::bail!(
                    "the schedule {:?} has no future run time",
                    schedule.expression()
                );
            };
            engine.store_mut().set_scheduled(next)?;
            tracing::info!(next = %next.to_rfc3339(), "next cycle scheduled");
            let wait = (next - Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => break,
            }
        }
        first = false;
        let progress = Progress::new(false);
        match engine
            .run_cycle(CycleRequest::default(), &progress, &shutdown)
            .await
        {
            Ok(report) if report.needs_attention() => tracing::warn!(
                mode = report.mode,
                withheld_deletes = report.withheld_deletes,
                "{}",
                report.summary()
            ),
            Ok(report) => tracing::info!(
                mode = report.mode,
                users = report.users,
                groups = report.groups,
                upserts = report.upserts,
                deletes = report.deletes,
                skipped = report.skipped.len(),
                duration_secs = report.duration_secs,
                "{}",
                report.summary()
            ),
            Err(CycleError::Interrupted) => break,
            // A failed cycle is retried at the next scheduled time; nothing was lost.
            Err(error) => tracing::error!("cycle failed: {error}"),
        }
        if shutdown.is_cancelled() {
            break;
        }
    }
    engine.store_mut().set_stopped()?;
    tracing::info!("connector stopped");
    Ok(())
}
