//! `preview`: read a few users and groups and print exactly what a sink would receive.
//! Sends nothing and writes no state.

use ad_model::{Group, User};
use ad_source::{Source, SourceEvent};
use asset_sink::{qualys, sekoia};
use chrono::Utc;

use crate::config::{Config, SinkKind};

/// Print the payload of up to `limit` users and `limit` groups for `kind`.
pub async fn run(config: &Config, kind: SinkKind, limit: usize) -> anyhow::Result<()> {
    let source = Source::new(config.source()?.clone())?;
    let mut run = source.full_snapshot().await?;
    let mut users: Vec<User> = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    while let Some(event) = run.next_event().await {
        match event {
            SourceEvent::User(decoded) if users.len() < limit => users.push(decoded.record),
            SourceEvent::Group(decoded) if groups.len() < limit => groups.push(decoded.record),
            SourceEvent::Skipped { dn, reason, .. } => eprintln!("skipped {dn}: {reason}"),
            _ => {}
        }
        if users.len() >= limit && groups.len() >= limit {
            break;
        }
    }
    // Stop the reader: a preview does not need the rest.
    drop(run);
    println!("{}", render(kind, &users, &groups)?);
    Ok(())
}

/// The payload as pretty JSON.
pub fn render(kind: SinkKind, users: &[User], groups: &[Group]) -> anyhow::Result<String> {
    let now = Utc::now();
    let value = match kind {
        SinkKind::Sekoia => {
            let refs: Vec<&User> = users.iter().collect();
            let body = sekoia::request_body(&refs, now)?;
            serde_json::from_slice::<serde_json::Value>(&body)?
        }
        SinkKind::Qualys => {
            let mut assets = Vec::new();
            for user in users {
                assets.push(serde_json::to_value(qualys::mapping::user_asset(user))?);
            }
            for group in groups {
                assets.push(serde_json::to_value(qualys::mapping::group_asset(group))?);
            }
            serde_json::json!({ "assetData": assets })
        }
        SinkKind::Jsonl => serde_json::json!({ "users": users, "groups": groups }),
    };
    Ok(serde_json::to_string_pretty(&value)?)
}
