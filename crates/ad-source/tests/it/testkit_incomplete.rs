//! Incomplete reads against the in-process directory: a page without the paged-results
//! control, searches ending in a limit error part-way, and errors that still fail the run.

use ad_source::{Source, SourceError};
use ad_testkit::{FailureCode, FaultOptions, PageFault, PageFaultKind, ServerOptions, TestServer};

use crate::common::{counters_consistent, drain, full, no_duplicates};
use crate::testkit::{company, config, truth};

/// The users search (the default user filter), not the group index or the groups.
const USERS: &str = "objectCategory=person";

fn on_users_page_two(kind: PageFaultKind) -> FaultOptions {
    FaultOptions {
        page_fault: Some(PageFault {
            kind,
            first_pages: 1,
            filter_contains: Some(USERS.into()),
        }),
        ..FaultOptions::default()
    }
}

#[tokio::test]
async fn testkit_page_without_paged_control_ends_the_search_and_is_counted() {
    let (directory, _) = company(2_500);
    let server = TestServer::start(
        directory.clone(),
        ServerOptions {
            faults: on_users_page_two(PageFaultKind::OmitPagedControl),
            ..ServerOptions::default()
        },
    )
    .unwrap();
    let cfg = config(&server);
    let all = truth(&directory, &cfg.user_filter).len();
    assert!(all > 2_000);
    let (c, summary) = full(&Source::new(cfg).unwrap()).await;
    no_duplicates(&c);
    counters_consistent(&c, &summary.counters);
    // Pages 1 and 2 (1,000 each, MaxPageSize), then no cookie to ask for page 3.
    assert_eq!(c.users.len(), 2_000);
    assert!(c.groups.len() > 10, "groups are not affected");
    assert_eq!(summary.counters.pages_without_paged_control, 1);
    assert_eq!(summary.counters.limit_exceeded, 0);
    assert!(summary.truncated());
    let reasons = summary.incomplete_reasons();
    assert!(
        reasons.iter().any(|r| r
            == "1 result page was answered without the paged-results response control, so the search ended there: entries may be missing"),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn testkit_limit_exceeded_part_way_keeps_the_entries_and_is_counted() {
    let (directory, _) = company(1_500);
    let server = TestServer::start(directory.clone(), ServerOptions::default()).unwrap();
    let cfg = config(&server);
    let source = Source::new(cfg.clone()).unwrap();
    for code in [
        FailureCode::SizeLimitExceeded,
        FailureCode::TimeLimitExceeded,
        FailureCode::AdminLimitExceeded,
    ] {
        server.set_faults(on_users_page_two(PageFaultKind::EndWith {
            code,
            entries: 7,
        }));
        let run = source.full_snapshot().await.unwrap();
        let (c, end) = drain(run).await;
        let summary = end.unwrap_or_else(|e| panic!("{code:?} must not fail the run: {e}"));
        no_duplicates(&c);
        assert_eq!(c.users.len(), 1_007, "{code:?}");
        assert_eq!(summary.counters.limit_exceeded, 1, "{code:?}");
        assert_eq!(summary.counters.pages_without_paged_control, 0, "{code:?}");
        assert!(summary.truncated());
        assert!(
            summary.incomplete_reasons().contains(
                &"1 search ended with sizeLimitExceeded/timeLimitExceeded/adminLimitExceeded: entries may be missing".to_owned()
            ),
            "{:?}",
            summary.incomplete_reasons()
        );
    }
    // Without faults: complete, nothing to explain but the referrals AD always sends.
    server.set_faults(FaultOptions::default());
    let (c, summary) = full(&source).await;
    assert_eq!(c.users.len(), truth(&directory, &cfg.user_filter).len());
    assert!(!summary.truncated());
    let reasons = summary.incomplete_reasons();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains("referrals were not followed"),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn testkit_other_search_errors_still_fail_the_run() {
    let (directory, _) = company(1_500);
    let server = TestServer::start(
        directory,
        ServerOptions {
            faults: on_users_page_two(PageFaultKind::EndWith {
                code: FailureCode::UnwillingToPerform,
                entries: 3,
            }),
            ..ServerOptions::default()
        },
    )
    .unwrap();
    let run = Source::new(config(&server))
        .unwrap()
        .full_snapshot()
        .await
        .unwrap();
    let (_, end) = drain(run).await;
    match end {
        Err(SourceError::Search {
            result_code: 53, ..
        }) => {}
        other => panic!("unwillingToPerform must fail the run: {other:?}"),
    }
}
