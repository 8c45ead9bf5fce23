use std::time::{Duration, Instant};

use secrecy::SecretString;
use uuid::Uuid;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::ocsf::{UserType, user_inventory_info};
use super::*;
use crate::change::{Batch, Change};
use crate::error::SinkError;
use crate::sink::Sink;
use crate::test_support::fast_http;
use crate::testing;

const CONNECTOR: Uuid = Uuid::from_u128(0x0b7a_6a54_3c5e_4d7f_9a51_8a0e_8a3c_2f10);
const PUSH_PATH: &str =
    "/api/v2/asset-management/asset-connector/0b7a6a54-3c5e-4d7f-9a51-8a0e8a3c2f10";

fn sink(base: &str) -> SekoiaSink {
    let mut config = SekoiaConfig::new(CONNECTOR, SecretString::from("sk-test-key"));
    config.base_url = format!("{base}/");
    config.http = fast_http();
    SekoiaSink::new(config).unwrap()
}

fn users_batch(id: u64, count: usize) -> Batch {
    Batch {
        id,
        sync: testing::sync(),
        changes: testing::many_users(count)
            .into_iter()
            .map(Change::UpsertUser)
            .collect(),
    }
}

#[test]
fn payload_snapshot() {
    let sink = sink("http://127.0.0.1:9");
    let batch = testing::batch();
    let bodies = sink.encode(&batch).unwrap();
    assert_eq!(bodies.len(), 1);
    let sent: serde_json::Value = serde_json::from_slice(&bodies[0]).unwrap();
    // 8 users; the group change re-sends Zoë, who is already in the batch: sent once.
    assert_eq!(sent["items"].as_array().unwrap().len(), 8);
    assert!(!String::from_utf8_lossy(&bodies[0]).contains("null"));
    // The snapshot is the same document pretty-printed in field order (easier to review
    // than sorted keys); the equality proves it is exactly what is sent.
    #[derive(serde::Serialize)]
    struct Body<'a> {
        version: u8,
        items: Vec<super::ocsf::UserInventoryInfo<'a>>,
    }
    let users = testing::users();
    let pretty = serde_json::to_string_pretty(&Body {
        version: 1,
        items: users
            .iter()
            .map(|u| user_inventory_info(u, batch.sync.at))
            .collect(),
    })
    .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&pretty).unwrap(),
        sent
    );
    // metadata.product.version is our crate version: redacted so releases do not churn it.
    let version = format!("\"version\": \"{}\"", env!("CARGO_PKG_VERSION"));
    let pretty = pretty.replace(&version, "\"version\": \"[crate version]\"");
    insta::assert_snapshot!("sekoia_payload", pretty);
}

#[test]
fn user_types_come_from_real_signals() {
    use testing::*;
    let kind = |u: &ad_model::User| UserType::of(u);
    assert_eq!(kind(&normal()), UserType::User);
    assert_eq!(kind(&admin()), UserType::Admin);
    // The fixture's SQL Services group is nested in Server Operators: privilege wins.
    assert_eq!(kind(&service_account()), UserType::Admin);
    let mut plain_service = service_account();
    plain_service.privileges.clear();
    plain_service.transitive_groups = plain_service.groups.clone();
    assert_eq!(kind(&plain_service), UserType::Service);
    assert_eq!(kind(&krbtgt()), UserType::System);
    assert_eq!(kind(&no_groups()), UserType::User);
    // "admin" in a DN or group name means nothing; the SID does.
    let mut fake = normal();
    fake.dn = "CN=Sysadmin Team Lead,OU=Admins,DC=corp,DC=example,DC=test".into();
    fake.groups[0].name = Some("Helpdesk Admins".into());
    fake.groups[0].dn = "CN=Helpdesk Admins,OU=Groups,DC=corp,DC=example,DC=test".into();
    assert_eq!(kind(&fake), UserType::User);
    // Enterprise Admins as primary group (primaryGroupID 519) is enough.
    let mut primary = normal();
    primary.groups.clear();
    primary.primary_group_sid = Some(sid(519));
    assert_eq!(kind(&primary), UserType::Admin);
    // The built-in Administrator is an Admin even if its groups were not resolved.
    let mut rid500 = no_groups();
    rid500.object_sid = Some(sid(500));
    assert_eq!(kind(&rid500), UserType::Admin);
    // A machine account is System.
    let mut machine = no_groups();
    machine.object_class.push("computer".into());
    assert_eq!(kind(&machine), UserType::System);
}

#[test]
fn enrichment_dates_follow_sekoia_types() {
    let user = testing::normal();
    let value = serde_json::to_value(user_inventory_info(&user, testing::now())).unwrap();
    let data = &value["enrichments"][0]["data"];
    // last_logon: lastLogonTimestamp (replicated) as epoch seconds in a string, like
    // Sekoia's AD connector; last_time_password_change: epoch seconds as a number.
    assert_eq!(
        data["last_logon"],
        serde_json::json!(user.last_logon_timestamp.unwrap().timestamp().to_string())
    );
    assert_eq!(
        data["last_time_password_change"],
        serde_json::json!(user.password_last_set().unwrap().timestamp())
    );
    let never = testing::never_logged_on();
    let value = serde_json::to_value(user_inventory_info(&never, testing::now())).unwrap();
    let data = value["enrichments"][0]["data"].as_object().unwrap();
    assert!(!data.contains_key("last_logon"));
    assert!(!data.contains_key("last_time_password_change"));
    assert_eq!(data["number_of_logons"], 0);
    assert_eq!(value["time"], testing::now().timestamp());
}

#[tokio::test]
async fn accepted_batch_posts_the_documented_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PUSH_PATH))
        .and(header("authorization", "Bearer sk-test-key"))
        .and(header("content-type", "application/json"))
        .and(header(
            "user-agent",
            "sekoiaio-asset-connector-0b7a6a54-3c5e-4d7f-9a51-8a0e8a3c2f10",
        ))
        .and(body_partial_json(serde_json::json!({"version": 1})))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"task_id": "t-1"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let ack = sink(&server.uri()).send(&testing::batch()).await.unwrap();
    assert_eq!(ack.batch_id, 7);
    assert_eq!(ack.items_sent, 8);
    assert_eq!(ack.requests, 1);
    assert_eq!(ack.task_ids, vec!["t-1".to_owned()]);
    // 8 users + 4 groups accepted; 2 deletes not representable, with a reason.
    assert_eq!(ack.accepted, 12);
    assert_eq!(ack.not_representable_count(), 2);
    assert_eq!(ack.not_representable[0].what, "delete");
    assert_eq!(ack.not_representable[0].reason, DELETE_REASON);
}

#[tokio::test]
async fn large_batches_are_split_and_acknowledged_whole() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(3)
        .mount(&server)
        .await;
    let mut config = SekoiaConfig::new(CONNECTOR, SecretString::from("k"));
    config.base_url = server.uri();
    config.batch_size = 4;
    config.http = fast_http();
    let sink = SekoiaSink::new(config).unwrap();
    let ack = sink.send(&users_batch(1, 10)).await.unwrap();
    assert_eq!((ack.requests, ack.items_sent, ack.accepted), (3, 10, 10));
    let sizes: Vec<usize> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["items"]
                .as_array()
                .unwrap()
                .len()
        })
        .collect();
    let mut sorted = sizes.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![2, 4, 4]);
}

#[tokio::test]
async fn retry_after_429_is_honoured() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let started = Instant::now();
    let ack = sink(&server.uri()).send(&users_batch(2, 3)).await.unwrap();
    assert_eq!(ack.accepted, 3);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn server_error_then_success() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("oops"))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let ack = sink(&server.uri()).send(&users_batch(3, 2)).await.unwrap();
    assert_eq!(ack.accepted, 2);
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn timeout_then_success() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let mut config = SekoiaConfig::new(CONNECTOR, SecretString::from("k"));
    config.base_url = server.uri();
    config.http = fast_http();
    config.http.timeout_secs = 0.3;
    let started = Instant::now();
    let ack = SekoiaSink::new(config)
        .unwrap()
        .send(&users_batch(4, 1))
        .await
        .unwrap();
    assert_eq!(ack.accepted, 1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn bad_request_is_not_retried_and_names_everything() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(serde_json::json!({"message": "items[3].user.name is required"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = sink(&server.uri())
        .send(&users_batch(42, 5))
        .await
        .unwrap_err();
    match &err {
        SinkError::Rejected {
            status,
            message,
            what,
            host,
            ..
        } => {
            assert_eq!(*status, 400);
            assert_eq!(message, "items[3].user.name is required");
            assert!(what.contains("batch 42"), "{what}");
            assert!(host.starts_with("127.0.0.1:"), "{host}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("HTTP 400") && text.contains("batch 42"),
        "{text}"
    );
}

#[tokio::test]
async fn unauthorized_api_key_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(serde_json::json!({"message": "invalid token"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = sink(&server.uri())
        .send(&users_batch(5, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SinkError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("sekoia.api_key"), "{err}");
}

#[tokio::test]
async fn persistent_failures_exhaust_the_budget() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let mut config = SekoiaConfig::new(CONNECTOR, SecretString::from("k"));
    config.base_url = server.uri();
    config.http = fast_http();
    config.http.max_retry_secs = 0.3;
    let err = SekoiaSink::new(config)
        .unwrap()
        .send(&users_batch(6, 1))
        .await
        .unwrap_err();
    match &err {
        SinkError::RetriesExhausted { attempts, last, .. } => {
            assert!(*attempts >= 2, "{attempts}");
            assert!(last.contains("HTTP 503"), "{last}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.is_transient());
}

#[tokio::test]
async fn retry_after_beyond_the_budget_fails_fast() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "600"))
        .mount(&server)
        .await;
    let started = Instant::now();
    let err = sink(&server.uri())
        .send(&users_batch(8, 1))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(err.to_string().contains("asked to wait 600 s"), "{err}");
}

#[tokio::test]
async fn groups_only_batches_resend_members_and_empty_batches_send_nothing() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let sink = sink(&server.uri());
    let group = testing::global_security_group();
    let batch = Batch {
        id: 9,
        sync: testing::sync(),
        changes: vec![Change::UpsertGroup {
            group,
            affected_users: vec![testing::normal(), testing::locked()],
        }],
    };
    let ack = sink.send(&batch).await.unwrap();
    assert_eq!((ack.accepted, ack.items_sent, ack.requests), (1, 2, 1));
    let only_deletes = Batch {
        id: 10,
        sync: testing::sync(),
        changes: testing::deletions()
            .into_iter()
            .map(Change::Delete)
            .collect(),
    };
    let ack = sink.send(&only_deletes).await.unwrap();
    assert_eq!(
        (ack.accepted, ack.requests, ack.not_representable_count()),
        (0, 0, 2)
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn check_reports_reachability_and_credentials() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(
            serde_json::json!({"version": 1, "items": []}),
        ))
        .respond_with(ResponseTemplate::new(200))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(403).set_body_string("forbidden"))
        .mount(&server)
        .await;
    let sink = sink(&server.uri());
    let report = sink.check().await.unwrap();
    assert!(report.ok(), "{report:?}");
    let report = sink.check().await.unwrap();
    assert!(!report.ok());
    assert!(report.items[0].ok, "reachable: {report:?}");
    assert!(!report.items[1].ok);
    assert!(report.items[1].detail.contains("403"), "{report:?}");
    let mut config = SekoiaConfig::new(CONNECTOR, SecretString::from("k"));
    config.base_url = "http://127.0.0.1:1".into();
    config.http = fast_http();
    config.http.max_retry_secs = 0.2;
    let unreachable = SekoiaSink::new(config).unwrap();
    let report = unreachable.check().await.unwrap();
    assert!(!report.items[0].ok, "{report:?}");
}

#[test]
fn config_rejects_bad_values() {
    let mut config = SekoiaConfig::new(CONNECTOR, SecretString::from("k"));
    config.base_url = "ftp://x".into();
    assert!(
        SekoiaSink::new(config.clone())
            .unwrap_err()
            .to_string()
            .contains("base_url")
    );
    config.base_url = DEFAULT_BASE_URL.into();
    config.batch_size = 0;
    assert!(
        SekoiaSink::new(config.clone())
            .unwrap_err()
            .to_string()
            .contains("batch_size")
    );
    config.batch_size = 10;
    config.api_key = SecretString::from(" ");
    assert!(
        SekoiaSink::new(config)
            .unwrap_err()
            .to_string()
            .contains("api_key")
    );
    let parsed: SekoiaConfig = toml::from_str(
        "connector_uuid = \"0b7a6a54-3c5e-4d7f-9a51-8a0e8a3c2f10\"\napi_key = \"k\"\n",
    )
    .unwrap();
    assert_eq!(parsed.base_url, DEFAULT_BASE_URL);
    assert_eq!(parsed.batch_size, DEFAULT_BATCH_SIZE);
    assert!(toml::from_str::<SekoiaConfig>("connector_uuid = \"0b7a6a54-3c5e-4d7f-9a51-8a0e8a3c2f10\"\napi_key = \"k\"\napikey = 1\n").is_err());
}
