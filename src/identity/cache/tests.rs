//! Expiry, refresh, single flight and isolation, on tokio's paused clock.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::secret::SecretString;

const HOUR: Duration = Duration::from_secs(3600);

fn key(subject: &str) -> CacheKey {
    CacheKey::Workload {
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

async fn get(
    cache: &TokenCache,
    subject: &str,
    value: &str,
    calls: &AtomicUsize,
) -> Result<String, IdentityError> {
    cache
        .get_or_fetch(key(subject), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(token(value, HOUR))
        })
        .await
        .map(|t| t.value.expose().to_owned())
}

#[tokio::test(start_paused = true)]
async fn reuses_a_token_until_half_its_life() {
    let cache = TokenCache::new(8, Duration::from_secs(300));
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
    let cache = TokenCache::new(8, Duration::from_secs(300));
    let first = AccessToken::new(
        SecretString::new("a".into()),
        Instant::now(),
        HOUR,
        Some(Duration::from_secs(600)),
    );
    cache
        .get_or_fetch(key("sa"), || async { Ok(first) })
        .await
        .unwrap();

    tokio::time::advance(Duration::from_secs(601)).await;
    let calls = AtomicUsize::new(0);
    assert_eq!(get(&cache, "sa", "b", &calls).await.unwrap(), "b");
}

#[tokio::test(start_paused = true)]
async fn different_subjects_never_share_a_token() {
    let cache = TokenCache::new(8, Duration::from_secs(300));
    let calls = AtomicUsize::new(0);

    assert_eq!(
        get(&cache, "system:serviceaccount:a:one", "for-one", &calls)
            .await
            .unwrap(),
        "for-one"
    );
    assert_eq!(
        get(&cache, "system:serviceaccount:a:two", "for-two", &calls)
            .await
            .unwrap(),
        "for-two"
    );

    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_keeps_a_safe_token_but_not_an_unsafe_one() {
    let cache = TokenCache::new(8, Duration::from_secs(300));
    let calls = AtomicUsize::new(0);
    get(&cache, "sa", "good", &calls).await.unwrap();

    // Past the refresh time, Entra is down: the cached token is still good for a while.
    tokio::time::advance(Duration::from_secs(2000)).await;
    let kept = cache
        .get_or_fetch(key("sa"), || async { Err(outage()) })
        .await
        .unwrap();
    assert_eq!(kept.value.expose(), "good");

    // Within five minutes of expiry it is no longer handed out.
    tokio::time::advance(Duration::from_secs(1400)).await;
    let failed = cache
        .get_or_fetch(key("sa"), || async { Err(outage()) })
        .await;
    assert!(failed.is_err());

    // And the failures did not poison the entry.
    assert_eq!(get(&cache, "sa", "fresh", &calls).await.unwrap(), "fresh");
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_one_request() {
    let cache = TokenCache::new(8, Duration::from_secs(300));
    let calls = AtomicUsize::new(0);
    let slow = || async {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(token("shared", HOUR))
    };

    let results =
        futures::future::join_all((0..20).map(|_| cache.get_or_fetch(key("sa"), slow))).await;

    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap().value.expose() == "shared")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn stays_within_its_capacity() {
    let cache = TokenCache::new(4, Duration::from_secs(300));
    let calls = AtomicUsize::new(0);
    for i in 0..10 {
        get(&cache, &format!("sa-{i}"), "t", &calls).await.unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(cache.len(), 4);
}
