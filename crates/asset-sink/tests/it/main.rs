//! Integration tests through the public API: no secret in any log line, error or `Debug`
//! output, and the sinks usable as `dyn Sink`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use asset_sink::http::{HttpConfig, ProxyConfig};
use asset_sink::jsonl::{JsonlConfig, JsonlSink};
use asset_sink::qualys::{QualysAuth, QualysConfig, QualysSink};
use asset_sink::sekoia::{SekoiaConfig, SekoiaSink};
use asset_sink::{Sink, SinkError, testing};
use secrecy::SecretString;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod hostile;
mod platform_models;
mod unicode;

const API_KEY: &str = "SEKOIA-APIKEY-7f3a9c";
const QUALYS_PASSWORD: &str = "QUALYS-PASSWORD-4b8e1d";
const OAUTH_SECRET: &str = "OAUTH-SECRET-92c6aa";
const PROXY_PASSWORD: &str = "PROXY-PASSWORD-1e5f77";
const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.JWT-TOKEN-5d2b.sig";
const OAUTH_TOKEN: &str = "OAUTH-ACCESS-TOKEN-33ac";
const SECRETS: [&str; 6] = [
    API_KEY,
    QUALYS_PASSWORD,
    OAUTH_SECRET,
    PROXY_PASSWORD,
    JWT,
    OAUTH_TOKEN,
];

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn http() -> HttpConfig {
    HttpConfig {
        timeout_secs: 2.0,
        max_retry_secs: 0.5,
        initial_backoff_ms: 10,
        max_backoff_secs: 0.05,
        ..HttpConfig::default()
    }
}

fn qualys_config(gateway: &str, auth: QualysAuth) -> QualysConfig {
    let mut config = QualysConfig::new(
        gateway,
        Uuid::from_u128(1),
        Uuid::from_u128(2),
        Uuid::from_u128(3),
        auth,
    );
    config.http = http();
    config
}

fn basic() -> QualysAuth {
    QualysAuth::Basic {
        username: "api_user".into(),
        password: SecretString::from(QUALYS_PASSWORD),
        token_lifetime_secs: 14400,
    }
}

fn oauth(server: &MockServer) -> QualysAuth {
    QualysAuth::OAuth {
        client_id: "client".into(),
        client_secret: SecretString::from(OAUTH_SECRET),
        token_url: format!("{}/oauth/token", server.uri()),
    }
}

fn assert_clean(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} contains a secret: {text}");
    }
}

fn check_error(outputs: &mut Vec<String>, result: Result<asset_sink::Ack, SinkError>) {
    let err = result.unwrap_err();
    outputs.push(err.to_string());
    outputs.push(format!("{err:?}"));
}

/// Every success and failure path, with a subscriber capturing all output at TRACE (ours and
/// our dependencies', `log` records included); no secret may appear anywhere.
#[tokio::test]
async fn no_secret_in_logs_errors_or_debug() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    // Everything at TRACE except the mock platform's own logs (it prints what it received,
    // which is the platform's side, not ours).
    tracing_subscriber::fmt()
        .with_env_filter("trace,wiremock=off")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .unwrap();

    let server = MockServer::start().await;
    let mut outputs: Vec<String> = Vec::new();
    let batch = testing::batch();

    // Sekoia: success, then 401, then a 400 whose message echoes the API key.
    let mut sekoia = SekoiaConfig::new(Uuid::from_u128(9), SecretString::from(API_KEY));
    sekoia.base_url = server.uri();
    sekoia.http = http();
    sekoia.http.proxy = Some(ProxyConfig {
        url: "http://127.0.0.1:9".into(),
        username: Some("proxy-user".into()),
        password: Some(SecretString::from(PROXY_PASSWORD)),
        no_proxy: Some("127.0.0.1".into()),
    });
    outputs.push(format!("{sekoia:?}"));
    let sink = SekoiaSink::new(sekoia.clone()).unwrap();
    outputs.push(format!("{sink:?}"));
    let push = "/api/v2/asset-management/asset-connector/00000000-0000-0000-0000-000000000009";
    Mock::given(method("POST"))
        .and(path(push))
        .respond_with(ResponseTemplate::new(200))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(push))
        .respond_with(ResponseTemplate::new(401).set_body_string("invalid key"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(push))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(
                serde_json::json!({"message": format!("key {API_KEY} is not allowed")}),
            ),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let ack = sink.send(&batch).await.unwrap();
    outputs.push(format!("{ack:?}"));
    check_error(&mut outputs, sink.send(&batch).await);
    check_error(&mut outputs, sink.send(&batch).await);
    assert!(
        outputs.last().unwrap().contains("[redacted]"),
        "{outputs:?}"
    );

    // Qualys BASIC: token, 401 → refresh → 200; then the auth endpoint refuses and echoes
    // the password.
    Mock::given(method("POST"))
        .and(path("/auth"))
        .respond_with(ResponseTemplate::new(201).set_body_string(JWT))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/auth"))
        .respond_with(
            ResponseTemplate::new(401).set_body_string(format!("bad password {QUALYS_PASSWORD}")),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(asset_sink::qualys::DEFAULT_ENDPOINT_PATH))
        .respond_with(ResponseTemplate::new(401))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(asset_sink::qualys::DEFAULT_ENDPOINT_PATH))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let config = qualys_config(&server.uri(), basic());
    outputs.push(format!("{config:?}"));
    let qualys = QualysSink::new(config).unwrap();
    qualys.send(&batch).await.unwrap();
    outputs.push(format!("{qualys:?}"));
    let fresh = QualysSink::new(qualys_config(&server.uri(), basic())).unwrap();
    check_error(&mut outputs, fresh.send(&batch).await);
    let report = fresh.check().await.unwrap();
    outputs.push(format!("{report:?}"));

    // Qualys OAUTH: token endpoint 500s until the budget runs out; then 400 echoing the
    // secret; then a token that works.
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(500).set_body_string("down"))
        .up_to_n_times(3)
        .mount(&server)
        .await;
    let config = qualys_config(&server.uri(), oauth(&server));
    outputs.push(format!("{config:?}"));
    let oauth_sink = QualysSink::new(config).unwrap();
    let mut quick = qualys_config(&server.uri(), oauth(&server));
    quick.http.max_retry_secs = 0.05;
    check_error(
        &mut outputs,
        QualysSink::new(quick).unwrap().send(&batch).await,
    );
    server.reset().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            serde_json::json!({"error": "invalid_client", "error_description": format!("secret {OAUTH_SECRET} revoked")}),
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    check_error(&mut outputs, oauth_sink.send(&batch).await);
    assert!(
        outputs.last().unwrap().contains("[redacted]"),
        "{outputs:?}"
    );
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"access_token": OAUTH_TOKEN, "expires_in": 3600}),
            ),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(asset_sink::qualys::DEFAULT_ENDPOINT_PATH))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    oauth_sink.send(&batch).await.unwrap();
    outputs.push(format!("{oauth_sink:?}"));

    // Config parsed from TOML and from the Qualys env file.
    let toml_config: SekoiaConfig = toml::from_str(&format!(
        "connector_uuid = \"{}\"\napi_key = \"{API_KEY}\"\n[http.proxy]\nurl = \"http://127.0.0.1:3128\"\nusername = \"u\"\npassword = \"{PROXY_PASSWORD}\"\n",
        Uuid::from_u128(9)
    ))
    .unwrap();
    outputs.push(format!("{toml_config:?}"));
    let (env_config, rest) = QualysConfig::from_env_file(&format!(
        "connector.api.url=https://gw\nqualys.customerUuid={}\nqualys.connectionUuid={}\nqualys.profileUuid={}\nauthentication.type=OAUTH\noauth.client.id=c\noauth.client.secret={OAUTH_SECRET}\noauth.token.url=https://idp/t\n",
        Uuid::from_u128(1),
        Uuid::from_u128(2),
        Uuid::from_u128(3)
    ))
    .unwrap();
    outputs.push(format!("{env_config:?} {rest:?}"));

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("retrying"),
        "the failure paths were logged: {logs}"
    );
    assert!(
        logs.contains("sending"),
        "requests were logged at debug: {logs}"
    );
    assert_clean("the logs", &logs);
    for output in &outputs {
        assert_clean("an error or Debug output", output);
    }
}

#[tokio::test]
async fn sinks_are_usable_as_trait_objects() {
    let dir = tempfile::tempdir().unwrap();
    let sinks: Vec<Box<dyn Sink>> = vec![
        Box::new(
            JsonlSink::new(JsonlConfig {
                path: dir.path().join("c.jsonl").display().to_string(),
                ..JsonlConfig::default()
            })
            .unwrap(),
        ),
        Box::new(
            SekoiaSink::new(SekoiaConfig::new(
                Uuid::from_u128(1),
                SecretString::from("k"),
            ))
            .unwrap(),
        ),
        Box::new(QualysSink::new(qualys_config("https://gw.example", basic())).unwrap()),
    ];
    let names: Vec<_> = sinks
        .iter()
        .map(|s| (s.name(), s.capabilities().deletes))
        .collect();
    assert_eq!(
        names,
        vec![("jsonl", true), ("sekoia", false), ("qualys", true)]
    );
    let ack = sinks[0].send(&testing::batch()).await.unwrap();
    assert_eq!(ack.accepted, 14);
}

/// `docs/mapping.md` is checked against the reviewed payload snapshots: every target path the
/// doc names for Qualys and Sekoia is present in the snapshot, and every Qualys leaf the
/// snapshot carries is documented.
mod mapping_doc {
    use std::collections::BTreeSet;

    fn read(relative: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The JSON body of an insta snapshot file.
    fn snapshot(relative: &str) -> serde_json::Value {
        let text = read(relative);
        let body = text.splitn(3, "---").nth(2).unwrap();
        serde_json::from_str(body.trim()).unwrap()
    }

    fn leaves(value: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    if !inner.is_object() {
                        out.insert(path.clone());
                    }
                    leaves(inner, &path, out);
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    leaves(item, &format!("{prefix}[]"), out);
                }
            }
            _ => {}
        }
    }

    /// Backticked paths in the doc's table rows that start with `prefix`.
    fn documented(doc: &str, section: &str, next: &str, prefix: &str) -> BTreeSet<String> {
        let (_, from_section) = doc.split_once(section).unwrap();
        let body = from_section
            .split_once(next)
            .map_or(from_section, |(body, _)| body);
        body.lines()
            .filter(|line| line.starts_with('|'))
            .flat_map(|line| {
                line.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .filter(|token| token.starts_with(prefix) && !token.contains(' '))
            .collect()
    }

    #[test]
    fn qualys_paths_match_the_snapshot() {
        let doc = read("../../docs/mapping.md");
        let snap = snapshot("src/qualys/snapshots/asset_sink__qualys__tests__qualys_payload.snap");
        let mut present = BTreeSet::new();
        for entry in snap["assetData"].as_array().unwrap() {
            if entry.get("operation").is_none() {
                leaves(entry, "", &mut present);
            }
        }
        let documented: BTreeSet<String> =
            documented(&doc, "## Qualys ETM", "### Deletes", "asset.");
        assert!(documented.len() >= 28, "{documented:#?}");
        for path in &documented {
            assert!(
                present.contains(path),
                "docs/mapping.md names {path}, the snapshot has no such field"
            );
        }
        for path in present
            .iter()
            .filter(|p| p.starts_with("asset.assetDetail.") || p.starts_with("asset.assetHeader."))
        {
            assert!(
                documented.contains(path),
                "the snapshot carries {path}, docs/mapping.md does not document it"
            );
        }
    }

    #[test]
    fn sekoia_paths_are_in_the_snapshot() {
        let doc = read("../../docs/mapping.md");
        let snap = snapshot("src/sekoia/snapshots/asset_sink__sekoia__tests__sekoia_payload.snap");
        let mut present = BTreeSet::new();
        for item in snap["items"].as_array().unwrap() {
            leaves(item, "", &mut present);
        }
        let documented: BTreeSet<String> =
            documented(&doc, "## Sekoia.io", "### User type", "user.");
        assert!(documented.len() >= 10, "{documented:#?}");
        for path in &documented {
            let path = path.trim_end_matches("[]");
            let found = present.iter().any(|p| {
                p == path
                    || p.starts_with(&format!("{path}."))
                    || p.starts_with(&format!("{path}[]"))
            });
            assert!(
                found,
                "docs/mapping.md names {path}, the Sekoia snapshot has no such field"
            );
        }
    }
}
