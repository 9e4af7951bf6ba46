//! Expiry, refresh, single flight, failures and isolation, on tokio's paused clock.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::secret::SecretString;

const HOUR: Duration = Duration::from_secs(3600);
const MARGIN: Duration = Duration::from_secs(300);
const MINUTE: Duration = Duration::from_secs(60);

fn key(subject: &str) -> CacheKey {
    CacheKey::Workload {
        cloud: "AzurePublicCloud".into(),
        authority: "https://login.microsoftonline.com/".into(),
        tenant: "t".into(),
        client_id: "c".into(),
        scope: "https://vault.azure.net/.default".into(),
        issuer: "https://issuer/".into(),
        subject: subject.into(),
    }
}

fn token(value: &str, life: Duration) -> AccessToken {
    AccessToken::new(SecretString::new(value.into()), Instant::now(), life, None)
}

fn outage() -> IdentityError {
    IdentityError::BadResponse {
        endpoint: "Entra ID".into(),
        status: 503,
    }
}

fn deadline() -> Instant {
    Instant::now() + MINUTE
}

/// Gets the token for `subject`, fetching `value` (an hour's token) when the cache asks.
async fn get(
    cache: &TokenCache,
    subject: &str,
    value: &str,
    calls: &AtomicUsize,
) -> Result<String, IdentityError> {
    cache
        .get_or_fetch(key(subject), deadline(), |_| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(token(value, HOUR))
        })
        .await
        .map(|t| t.value.expose().to_owned())
}

/// Gets the token for `subject` while every request fails.
async fn get_during_outage(
    cache: &TokenCache,
    subject: &str,
    calls: &AtomicUsize,
) -> Result<String, IdentityError> {
    cache
        .get_or_fetch(key(subject), deadline(), |_| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(outage())
        })
        .await
        .map(|t| t.value.expose().to_owned())
}

#[tokio::test(start_paused = true)]
async fn reuses_a_token_until_half_its_life() {
    let cache = TokenCache::new(8, MARGIN);
    let calls = AtomicUsize::new(0);

    assert_eq!(get(&cache, "sa", "one", &calls).await.unwrap(), "one");
    tokio::time::advance(Duration::from_secs(1799)).await;
    assert_eq!(get(&cache, "sa", "two", &calls).await.unwrap(), "one");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(get(&cache, "sa", "two", &calls).await.unwrap(), "two");

    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn honours_refresh_in() {
    let cache = TokenCache::new(8, MARGIN);
    let first = AccessToken::new(
        SecretString::new("a".into()),
        Instant::now(),
        HOUR,
        Some(Duration::from_secs(600)),
    );
    cache
        .get_or_fetch(key("sa"), deadline(), |_| async { Ok(first) })
        .await
        .unwrap();
    let calls = AtomicUsize::new(0);

    tokio::time::advance(Duration::from_secs(599)).await;
    assert_eq!(get(&cache, "sa", "b", &calls).await.unwrap(), "a");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(get(&cache, "sa", "b", &calls).await.unwrap(), "b");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_late_refresh_in_never_reaches_into_the_safety_margin() {
    let cache = TokenCache::new(8, MARGIN);
    let late = AccessToken::new(
        SecretString::new("late".into()),
        Instant::now(),
        HOUR,
        Some(Duration::from_secs(3590)),
    );
    cache
        .get_or_fetch(key("sa"), deadline(), |_| async { Ok(late) })
        .await
        .unwrap();
    let calls = AtomicUsize::new(0);

    // Five minutes before expiry is the last moment the token is handed out.
    tokio::time::advance(Duration::from_secs(3299)).await;
    assert_eq!(get(&cache, "sa", "new", &calls).await.unwrap(), "late");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(get(&cache, "sa", "new", &calls).await.unwrap(), "new");
}

#[tokio::test(start_paused = true)]
async fn a_short_token_keeps_a_quarter_of_its_life_as_margin() {
    let cache = TokenCache::new(8, MARGIN);
    let calls = AtomicUsize::new(0);
    let short = |value: &'static str| {
        let calls = &calls;
        move |_| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(token(value, Duration::from_secs(40)))
        }
    };
    cache
        .get_or_fetch(key("sa"), deadline(), short("a"))
        .await
        .unwrap();

    // Refresh at 20 s; when that fails, the token serves until 30 s and not after.
    tokio::time::advance(Duration::from_secs(21)).await;
    let kept = get_during_outage(&cache, "sa", &calls).await.unwrap();
    assert_eq!(kept, "a");
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(get_during_outage(&cache, "sa", &calls).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn different_subjects_never_share_a_token() {
    let cache = TokenCache::new(8, MARGIN);
    let calls = AtomicUsize::new(0);

    let one = get(&cache, "system:serviceaccount:a:one", "for-one", &calls).await;
    let two = get(&cache, "system:serviceaccount:a:two", "for-two", &calls).await;
    let one_again = get(&cache, "system:serviceaccount:a:one", "x", &calls).await;

    assert_eq!(
        (one.unwrap(), two.unwrap(), one_again.unwrap()),
        ("for-one".into(), "for-two".into(), "for-one".into())
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_keeps_a_safe_token_but_not_an_unsafe_one() {
    let cache = TokenCache::new(8, MARGIN);
    let calls = AtomicUsize::new(0);
    get(&cache, "sa", "good", &calls).await.unwrap();

    // Past the refresh time, Entra is down: the cached token is still good for a while.
    tokio::time::advance(Duration::from_secs(2000)).await;
    let kept = get_during_outage(&cache, "sa", &calls).await.unwrap();
    assert_eq!(kept, "good");

    // Within five minutes of expiry it is no longer handed out.
    tokio::time::advance(Duration::from_secs(1400)).await;
    let failed = get_during_outage(&cache, "sa", &calls).await;
    assert!(matches!(
        failed,
        Err(IdentityError::BadResponse { status: 503, .. })
    ));

    // And the failures did not poison the entry.
    assert_eq!(get(&cache, "sa", "fresh", &calls).await.unwrap(), "fresh");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn after_a_failed_refresh_the_next_attempt_waits() {
    let cache = TokenCache::new(8, MARGIN);
    let calls = AtomicUsize::new(0);
    get(&cache, "sa", "good", &calls).await.unwrap();
    tokio::time::advance(Duration::from_secs(1801)).await;

    get_during_outage(&cache, "sa", &calls).await.unwrap();
    for _ in 0..10 {
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            get_during_outage(&cache, "sa", &calls).await.unwrap(),
            "good"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one failed refresh");

    tokio::time::advance(RETRY_AFTER_FAILURE).await;
    assert_eq!(get(&cache, "sa", "new", &calls).await.unwrap(), "new");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_refresh_gets_a_short_budget_and_a_first_fetch_the_whole_deadline() {
    let cache = TokenCache::new(8, MARGIN);
    let mount_deadline = Instant::now() + Duration::from_secs(120);
    let budgets = Mutex::new(Vec::new());
    let record = |value: &'static str| {
        let budgets = &budgets;
        move |budget: Instant| async move {
            budgets.lock().unwrap().push(budget);
            Ok(token(value, HOUR))
        }
    };

    let first_asked = Instant::now();
    cache
        .get_or_fetch(key("sa"), mount_deadline, record("a"))
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(1801)).await;
    let refresh_asked = Instant::now();
    cache
        .get_or_fetch(
            key("sa"),
            refresh_asked + Duration::from_secs(120),
            record("b"),
        )
        .await
        .unwrap();

    let budgets = budgets.into_inner().unwrap();
    assert_eq!(budgets[0] - first_asked, Duration::from_secs(120));
    assert_eq!(budgets[1] - refresh_asked, REFRESH_BUDGET);
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_one_request() {
    let cache = TokenCache::new(8, MARGIN);
    let calls = AtomicUsize::new(0);
    let slow = |_| async {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(token("shared", HOUR))
    };

    let results =
        futures::future::join_all((0..20).map(|_| cache.get_or_fetch(key("sa"), deadline(), slow)))
            .await;

    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap().value.expose() == "shared")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_one_failure_and_the_next_caller_tries_again() {
    let cache = TokenCache::new(8, MARGIN);
    let calls = AtomicUsize::new(0);
    let failing = |_| async {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(outage())
    };

    let results = futures::future::join_all(
        (0..5).map(|_| cache.get_or_fetch(key("sa"), deadline(), failing)),
    )
    .await;
    assert!(results.iter().all(Result::is_err));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    assert_eq!(get(&cache, "sa", "later", &calls).await.unwrap(), "later");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn others_keep_the_safe_token_while_one_refreshes() {
    let cache = TokenCache::new(8, MARGIN);
    let calls = AtomicUsize::new(0);
    get(&cache, "sa", "old", &calls).await.unwrap();
    tokio::time::advance(Duration::from_secs(1801)).await;

    let slow_refresh = cache.get_or_fetch(key("sa"), deadline(), |_| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(token("new", HOUR))
    });
    let meanwhile = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = Instant::now();
        let value = get(&cache, "sa", "unused", &calls).await.unwrap();
        (value, started.elapsed())
    };
    let (refreshed, (value, waited)) = tokio::join!(slow_refresh, meanwhile);

    assert_eq!(refreshed.unwrap().value.expose(), "new");
    assert_eq!((value.as_str(), waited), ("old", Duration::ZERO));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_gives_up_at_its_own_deadline() {
    let cache = TokenCache::new(8, MARGIN);
    let slow = cache.get_or_fetch(key("sa"), deadline(), |_| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(token("late", HOUR))
    });
    let impatient = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let short = Instant::now() + Duration::from_secs(2);
        let result = cache
            .get_or_fetch(key("sa"), short, |_| async { Ok(token("x", HOUR)) })
            .await;
        (result, Instant::now() - short)
    };
    let (slow, (impatient, overrun)) = tokio::join!(slow, impatient);

    assert_eq!(slow.unwrap().value.expose(), "late");
    assert_eq!(overrun, Duration::ZERO);
    assert_eq!(
        impatient.unwrap_err().to_string(),
        "the token request shared with a concurrent Mount did not answer with a token after 0 \
         attempt(s) before the Mount's deadline: no time was left to try"
    );
}

#[tokio::test(start_paused = true)]
async fn stays_within_its_capacity() {
    let cache = TokenCache::new(4, MARGIN);
    let calls = AtomicUsize::new(0);
    for i in 0..10 {
        get(&cache, &format!("sa-{i}"), "t", &calls).await.unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(cache.len(), 4);

    // The newest entries stayed; the oldest were evicted and are fetched again.
    get(&cache, "sa-9", "t", &calls).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    get(&cache, "sa-0", "t", &calls).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 11);
}

#[tokio::test(start_paused = true)]
async fn eviction_drops_failed_entries_first() {
    let cache = TokenCache::new(3, MARGIN);
    let calls = AtomicUsize::new(0);
    get(&cache, "a", "t", &calls).await.unwrap();
    get_during_outage(&cache, "failed", &calls)
        .await
        .unwrap_err();
    get(&cache, "b", "t", &calls).await.unwrap();

    get(&cache, "c", "t", &calls).await.unwrap();

    assert_eq!(cache.len(), 3);
    get(&cache, "a", "t", &calls).await.unwrap();
    get(&cache, "b", "t", &calls).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 4, "a and b were kept");
}
