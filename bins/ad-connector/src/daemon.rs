//! `run`: cycles on a cron schedule until SIGTERM or Ctrl-C.
//!
//! A signal during a cycle abandons it safely: batches already acknowledged stay recorded,
//! the batch in flight is dropped, and the checkpoint does not move, so the next start
//! re-reads from the last checkpoint and re-sends at most what was not acknowledged.

use std::sync::Arc;

use ad_model::ObjectKind;
use ad_sync::{CycleError, CycleRequest, Delivered, NoObserver, Observer};
use asset_sink::Ack;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::progress::Progress;
use crate::telemetry::{self, HealthRule, Telemetry};

/// Two observers as one: the progress display and the metrics.
struct Both<'a>(&'a dyn Observer, &'a dyn Observer);

impl Observer for Both<'_> {
    fn object_read(&self, kind: ObjectKind) {
        self.0.object_read(kind);
        self.1.object_read(kind);
    }
    fn batch_recorded(&self, ack: &Ack) {
        self.0.batch_recorded(ack);
        self.1.batch_recorded(ack);
    }
    fn batch_delivered(&self, delivered: &Delivered) {
        self.0.batch_delivered(delivered);
        self.1.batch_delivered(delivered);
    }
    fn warning(&self, message: &str) {
        self.0.warning(message);
        self.1.warning(message);
    }
}

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
    let telemetry = match config.telemetry.listen {
        Some(addr) => {
            let listener = telemetry::bind(addr).await?;
            let rule = HealthRule::for_schedule(
                &schedule,
                config.telemetry.unhealthy_after_periods,
                Utc::now(),
            );
            let metrics = Arc::new(Telemetry::new(Arc::clone(engine.sink()), rule));
            metrics.cycle_ended(engine.store())?;
            tokio::spawn(telemetry::serve(
                listener,
                Arc::clone(&metrics),
                shutdown.clone(),
            ));
            Some(metrics)
        }
        None => None,
    };
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
        let metrics: &dyn Observer = match &telemetry {
            Some(metrics) => {
                metrics.cycle_started();
                metrics.as_ref()
            }
            None => &NoObserver,
        };
        let outcome = engine
            .run_cycle(
                CycleRequest::default(),
                &Both(&progress, metrics),
                &shutdown,
            )
            .await;
        if let Some(metrics) = &telemetry
            && let Err(error) = metrics.cycle_ended(engine.store())
        {
            tracing::warn!("telemetry: the cycle's outcome could not be read back: {error}");
        }
        match outcome {
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
