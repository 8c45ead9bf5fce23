//! `run`: cycles on a cron schedule until SIGTERM or Ctrl-C.
//!
//! A signal during a cycle abandons it safely: batches already acknowledged stay recorded,
//! the batch in flight is dropped, and the checkpoint does not move, so the next start
//! re-reads from the last checkpoint and re-sends at most what was not acknowledged.

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::pipeline;
use crate::progress::Progress;
use crate::schedule::Schedule;
use crate::state::{ConnectorState, State};

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
    let schedule = Schedule::parse("schedule.cron", &config.schedule.cron)?;
    let source = ad_source::Source::new(config.source()?.clone())?;
    let sink = config.build_sink()?;
    let mut state = State::open(&config.state_dir)?;
    let shutdown = shutdown_token();
    let options = crate::cycle_options(config, false);
    tracing::info!(
        cron = schedule.expression(),
        sink = sink.name(),
        state = %state.path().display(),
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
            state.set_connector_state(ConnectorState::Scheduled)?;
            tracing::info!(next = %next.to_rfc3339(), "next cycle scheduled");
            let wait = (next - Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => break,
            }
        }
        first = false;
        let progress = Progress::new(false);
        match pipeline::run_cycle(
            &source,
            sink.as_ref(),
            &mut state,
            &options,
            &progress,
            &shutdown,
        )
        .await
        {
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
            Err(pipeline::CycleError::Interrupted) => break,
            // A failed cycle is retried at the next scheduled time; nothing was lost.
            Err(error) => tracing::error!("cycle failed: {error}"),
        }
        if shutdown.is_cancelled() {
            break;
        }
    }
    tracing::info!("connector stopped");
    Ok(())
}
