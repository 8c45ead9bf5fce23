use std::time::Duration;

use ad_model::{AccountStatus, GroupType};
use secrecy::SecretString;
use uuid::Uuid;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::mapping::{group_type, status, visibility};
use super::*;
use crate::change::{Batch, Change};
use crate::error::SinkError;
use crate::sink::Sink;
use crate::test_support::{fast_http, loopback_proxy};
use crate::testing;

const CUSTOMER: Uuid = Uuid::from_u128(0x3566_4649_0000_4000_8000_0e54_079e_1ee9);
const CONNECTION: Uuid = Uuid::from_u128(0x6ec6_ac85_0000_4000_8000_558f_378c_aa2b);
const PROFILE: Uuid = Uuid::from_u128(0xa4ab_0242_0000_4000_8000_f62c_6709_3a56);

fn basic() -> QualysAuth {
    QualysAuth::Basic {
        username: "api_user".into(),
        password: SecretString::from("Qualys@890"),
        token_lifetime_secs: BASIC_TOKEN_LIFETIME_SECS,
    }
}

fn config(gateway: &str, auth: QualysAuth) -> QualysConfig {
    let mut config = QualysConfig::new(gateway, CUSTOMER, CONNECTION, PROFILE, auth);
    config.http = fast_http();
    config
}

fn sink(gateway: &str) -> QualysSink {
    QualysSink::new(config(gateway, basic())).unwrap()
}

async fn mount_auth(server: &MockServer, token: &str, times: u64) {
    Mock::given(method("POST"))
        .and(path("/auth"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string_contains("username=api_user"))
        .and(body_string_contains("password=Qualys%40890"))
        .and(body_string_contains("token=true"))
        .respond_with(ResponseTemplate::new(201).set_body_string(format!("{token}\n")))
        .up_to_n_times(times)
        .mount(server)
        .await;
}

fn one_user_batch(id: u64) -> Batch {
    Batch {
        id,
        sync: testing::sync(),
        changes: vec![Change::UpsertUser(testing::normal())],
    }
}

#[test]
fn payload_snapshot() {
    use super::mapping::{
        AssetEntry, ConnectorMetaData, DeleteEntry, delete_entry, group_asset, user_asset,
    };
    let batch = testing::batch();
    let bodies = sink("https://gateway.qg1.apps.qualys.com")
        .encode(&batch)
        .unwrap();
    assert_eq!(bodies.len(), 1);
    let sent: serde_json::Value = serde_json::from_slice(&bodies[0]).unwrap();
    // 8 users, 4 groups, 2 deletes; affected users of group changes are not re-sent.
    assert_eq!(sent["assetData"].as_array().unwrap().len(), 14);
    assert!(!String::from_utf8_lossy(&bodies[0]).contains("null"));
    // The snapshot is the same document pretty-printed in field order; the equality proves
    // it is exactly what is sent.
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Body<'a> {
        connector_meta_data: ConnectorMetaData<'a>,
        asset_data: Vec<Entry<'a>>,
    }
    #[derive(serde::Serialize)]
    #[serde(untagged)]
    #[allow(clippy::large_enum_variant)]
    enum Entry<'a> {
        Asset(AssetEntry<'a>),
        Delete(DeleteEntry),
    }
    let request_id = sent["connectorMetaData"]["requestId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (users, groups, deletions) = (testing::users(), testing::groups(), testing::deletions());
    let mut asset_data: Vec<Entry<'_>> = Vec::new();
    asset_data.extend(users.iter().map(|u| Entry::Asset(user_asset(u))));
    asset_data.extend(groups.iter().map(|g| Entry::Asset(group_asset(g))));
    asset_data.extend(deletions.iter().map(|d| Entry::Delete(delete_entry(d))));
    let pretty = serde_json::to_string_pretty(&Body {
        connector_meta_data: ConnectorMetaData {
            request_id,
            connector_uuid: CONNECTION,
            customer_uuid: CUSTOMER,
            profile_uuid: PROFILE,
            source: DEFAULT_SOURCE,
        },
        asset_data,
    })
    .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&pretty).unwrap(),
        sent
    );
    insta::assert_snapshot!("qualys_payload", pretty);
}

#[test]
fn request_ids_are_stable_per_request() {
    let sink = sink("https://gw.example");
    let a = sink.encode(&one_user_batch(1)).unwrap();
    let b = sink.encode(&one_user_batch(1)).unwrap();
    let c = sink.encode(&one_user_batch(2)).unwrap();
    let id = |body: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(body).unwrap()["connectorMetaData"]["requestId"]
            .clone()
    };
    assert_eq!(id(&a[0]), id(&b[0]));
    assert_ne!(id(&a[0]), id(&c[0]));
}

#[test]
fn function_picker_tables() {
    let cases = [
        (AccountStatus::Active, "ACTIVE"),
        (AccountStatus::Disabled, "DISABLED"),
        (AccountStatus::Expired, "EXPIRED"),
        (AccountStatus::LockedOut, "LOCKED_OUT"),
        (AccountStatus::PasswordExpired, "PASSWORD_EXPIRED"),
        (AccountStatus::MustChangePassword, "MUST_CHANGE_PASSWORD"),
    ];
    for (s, text) in cases {
        assert_eq!(status(s), text);
    }
    let groups = [
        ("-2147483646", "SECURITY_GLOBAL", "PRIVATE"),
        ("-2147483644", "SECURITY_DOMAIN_LOCAL", "PRIVATE"),
        ("-2147483640", "SECURITY_UNIVERSAL", "PRIVATE"),
        ("-2147483643", "SECURITY_DOMAIN_LOCAL", "SYSTEM"),
        ("2", "DISTRIBUTION_GLOBAL", "PUBLIC"),
        ("4", "DISTRIBUTION_DOMAIN_LOCAL", "PUBLIC"),
        ("8", "DISTRIBUTION_UNIVERSAL", "PUBLIC"),
        ("0", "DISTRIBUTION_UNKNOWN", "PUBLIC"),
    ];
    for (raw, t, v) in groups {
        let gt = GroupType::parse(raw).unwrap();
        assert_eq!((group_type(gt).as_str(), visibility(gt)), (t, v), "{raw}");
    }
    // Fixture users cover every status value but PASSWORD_EXPIRED (tested in ad-model).
    let statuses: Vec<&str> = testing::users()
        .iter()
        .map(|u| status(u.account.status))
        .collect();
    for s in [
        "ACTIVE",
        "DISABLED",
        "LOCKED_OUT",
        "MUST_CHANGE_PASSWORD",
        "EXPIRED",
    ] {
        assert!(statuses.contains(&s), "{s} in {statuses:?}");
    }
}

#[tokio::test]
async fn basic_auth_token_is_obtained_cached_and_sent() {
    let server = MockServer::start().await;
    mount_auth(&server, "jwt-one", 1).await;
    Mock::given(method("POST"))
        .and(path(DEFAULT_ENDPOINT_PATH))
        .and(header("authorization", "Bearer jwt-one"))
        .and(header("content-type", "application/json"))
        .respond_with(ResponseTemplate::new(200))
        .expect(2)
        .mount(&server)
        .await;
    let sink = sink(&server.uri());
    sink.send(&one_user_batch(1)).await.unwrap();
    let ack = sink.send(&testing::batch()).await.unwrap();
    assert_eq!(
        (ack.accepted, ack.items_sent, ack.not_representable_count()),
        (14, 14, 0)
    );
    let requests = server.received_requests().await.unwrap();
    assert_eq!(
        requests.iter().filter(|r| r.url.path() == "/auth").count(),
        1
    );
    let body: serde_json::Value = serde_json::from_slice(&requests[1].body).unwrap();
    assert_eq!(
        body["connectorMetaData"]["connectorUuid"],
        serde_json::json!(CONNECTION.to_string())
    );
    assert_eq!(
        body["connectorMetaData"]["customerUuid"],
        serde_json::json!(CUSTOMER.to_string())
    );
    assert_eq!(
        body["connectorMetaData"]["profileUuid"],
        serde_json::json!(PROFILE.to_string())
    );
}

#[tokio::test]
async fn unauthorized_refreshes_the_token_once() {
    let server = MockServer::start().await;
    mount_auth(&server, "jwt-old", 1).await;
    mount_auth(&server, "jwt-new", 1).await;
    Mock::given(method("POST"))
        .and(path(DEFAULT_ENDPOINT_PATH))
        .and(header("authorization", "Bearer jwt-old"))
        .respond_with(ResponseTemplate::new(401).set_body_string("token expired"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(DEFAULT_ENDPOINT_PATH))
        .and(header("authorization", "Bearer jwt-new"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let ack = sink(&server.uri()).send(&one_user_batch(3)).await.unwrap();
    assert_eq!(ack.accepted, 1);
}

#[tokio::test]
async fn unauthorized_twice_is_an_error() {
    let server = MockServer::start().await;
    mount_auth(&server, "jwt-a", 5).await;
    Mock::given(method("POST"))
        .and(path(DEFAULT_ENDPOINT_PATH))
        .respond_with(ResponseTemplate::new(401).set_body_string("no ETM permission"))
        .expect(2)
        .mount(&server)
        .await;
    let err = sink(&server.uri())
        .send(&one_user_batch(4))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SinkError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("no ETM permission"), "{err}");
}

#[tokio::test]
async fn oauth_client_credentials_and_renewal_before_expiry() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("client_id=cid"))
        .and(body_string_contains("client_secret=oauth-secret"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"access_token": "oat-1", "expires_in": 1, "token_type": "Bearer"}),
        ))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/custom/push"))
        .and(header("authorization", "Bearer oat-1"))
        .respond_with(ResponseTemplate::new(202))
        .expect(2)
        .mount(&server)
        .await;
    let mut config = config(
        &server.uri(),
        QualysAuth::OAuth {
            client_id: "cid".into(),
            client_secret: SecretString::from("oauth-secret"),
            token_url: format!("{}/oauth2/token", server.uri()),
        },
    );
    config.endpoint_path = "/custom/push".into();
    let sink = QualysSink::new(config).unwrap();
    sink.send(&one_user_batch(1)).await.unwrap();
    // expires_in = 1 s: renewed at half its lifetime at the latest.
    tokio::time::sleep(Duration::from_millis(600)).await;
    sink.send(&one_user_batch(2)).await.unwrap();
}

#[tokio::test]
async fn token_endpoint_failure_is_an_auth_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth"))
        .respond_with(ResponseTemplate::new(401).set_body_string("Bad credentials"))
        .expect(2)
        .mount(&server)
        .await;
    let err = sink(&server.uri())
        .send(&one_user_batch(1))
        .await
        .unwrap_err();
    match &err {
        SinkError::Auth { detail, path, .. } => {
            assert_eq!(path, "/auth");
            assert!(detail.contains("HTTP 401: Bad credentials"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("qualys.auth.username"), "{err}");
    let report = sink(&server.uri()).check().await.unwrap();
    assert!(!report.ok());
}

#[tokio::test]
async fn deletes_can_be_switched_off() {
    let server = MockServer::start().await;
    mount_auth(&server, "jwt", 1).await;
    Mock::given(method("POST"))
        .and(path(DEFAULT_ENDPOINT_PATH))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let mut config = config(&server.uri(), basic());
    config.send_deletes = false;
    let sink = QualysSink::new(config).unwrap();
    assert!(!sink.capabilities().deletes);
    let ack = sink.send(&testing::batch()).await.unwrap();
    assert_eq!(
        (ack.accepted, ack.items_sent, ack.not_representable_count()),
        (12, 12, 2)
    );
    assert_eq!(ack.not_representable[0].reason, DELETE_REASON);
}

#[tokio::test]
async fn check_gets_a_token_and_probes_the_endpoint() {
    let server = MockServer::start().await;
    mount_auth(&server, "jwt", 1).await;
    Mock::given(method("GET"))
        .and(path(DEFAULT_ENDPOINT_PATH))
        .and(header("authorization", "Bearer jwt"))
        .respond_with(ResponseTemplate::new(405))
        .expect(1)
        .mount(&server)
        .await;
    let report = sink(&server.uri()).check().await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.items.len(), 2);
}

#[tokio::test]
async fn every_request_goes_through_the_configured_proxy() {
    fn answer(_method: &str, target: &str) -> (u16, String) {
        if target.ends_with("/auth") {
            (200, "jwt-via-proxy".into())
        } else {
            (200, "{}".into())
        }
    }
    let proxy = loopback_proxy(answer).await;
    // Nothing listens on port 1: only the proxy can answer.
    let mut config = config("http://127.0.0.1:1", basic());
    config.http.proxy = Some(crate::http::ProxyConfig {
        url: proxy.url.clone(),
        username: Some("proxy-user".into()),
        password: Some(SecretString::from("proxy-pass")),
        no_proxy: None,
    });
    let sink = QualysSink::new(config).unwrap();
    let ack = sink.send(&one_user_batch(1)).await.unwrap();
    assert_eq!(ack.accepted, 1);
    let seen = proxy.seen.lock().unwrap().clone();
    // base64("proxy-user:proxy-pass")
    let auth = "Basic cHJveHktdXNlcjpwcm94eS1wYXNz";
    assert_eq!(
        seen,
        vec![
            format!("POST http://127.0.0.1:1/auth proxy-auth={auth}"),
            format!("POST http://127.0.0.1:1{DEFAULT_ENDPOINT_PATH} proxy-auth={auth}"),
        ]
    );
}

#[test]
fn config_errors() {
    let mut bad = config("not a url", basic());
    assert!(
        QualysSink::new(bad.clone())
            .unwrap_err()
            .to_string()
            .contains("gateway_url")
    );
    bad.gateway_url = "https://gw".into();
    bad.endpoint_path = "rest/x".into();
    assert!(
        QualysSink::new(bad.clone())
            .unwrap_err()
            .to_string()
            .contains("endpoint_path")
    );
    bad.endpoint_path = DEFAULT_ENDPOINT_PATH.into();
    bad.auth = QualysAuth::OAuth {
        client_id: "c".into(),
        client_secret: SecretString::from("s"),
        token_url: "token".into(),
    };
    assert!(
        QualysSink::new(bad)
            .unwrap_err()
            .to_string()
            .contains("auth.token_url")
    );
}
