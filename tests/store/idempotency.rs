//! The idempotency-key contract (`humpyard::store::Claim`'s protocol), as checks any store must
//! pass. `idempotency_tests!(module, make, with_retention)` instantiates every check as a test
//! for one store: `make` is a fresh store with the default retention, `with_retention` a
//! function from a retention to a fresh store keeping completed keys that long.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use humpyard::store::{Claim, ClaimToken, EventStore, IdempotencyKey, InvalidInput, StoreError};
use serde_json::json;

const MINUTE: Duration = Duration::from_secs(60);

pub fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::new(s).unwrap()
}

/// The token of a claim that must have been granted, with its attempt checked.
pub fn claimed(store: &dyn EventStore, k: &IdempotencyKey, ttl: Duration, attempt: u32) -> ClaimToken {
    match store.claim(k, ttl).unwrap() {
        Claim::Claimed(token) => {
            assert_eq!(token.key(), k);
            assert_eq!(token.attempt(), attempt, "the attempt of {k}'s claim");
            token
        }
        other => panic!("{k} should have been claimed (attempt {attempt}), got {other:?}"),
    }
}

fn in_progress(claim: &Claim) -> bool {
    matches!(claim, Claim::InProgress { .. })
}

fn claim_lost(result: Result<(), StoreError>, k: &IdempotencyKey) {
    match result {
        Err(StoreError::ClaimLost { key }) => assert_eq!(&key, k),
        other => panic!("expected ClaimLost for {k}, got {other:?}"),
    }
}

// proves R-IDEM-1: the holder runs, others see it in progress, then the outcome is replayed
pub fn claim_then_complete_replays_the_outcome(store: &dyn EventStore) {
    let k = key("order-1");
    let token = claimed(store, &k, MINUTE, 1);
    match store.claim(&k, MINUTE).unwrap() {
        Claim::InProgress { expires_in } => {
            assert!(expires_in > Duration::ZERO && expires_in <= MINUTE, "{expires_in:?}")
        }
        other => panic!("a held key is in progress, got {other:?}"),
    }
    store.complete(&token, json!({ "receipt": 42 })).unwrap();
    for _ in 0..3 {
        assert_eq!(
            store.claim(&k, MINUTE).unwrap(),
            Claim::Completed(json!({ "receipt": 42 }))
        );
    }
    // The token is spent: finishing it again changes nothing.
    claim_lost(store.complete(&token, json!("other")), &k);
    claim_lost(store.fail(&token), &k);
    assert_eq!(
        store.claim(&k, MINUTE).unwrap(),
        Claim::Completed(json!({ "receipt": 42 }))
    );
}

// proves R-IDEM-1: a failed effect releases its key at once, for a retry (R-INT-2)
pub fn fail_releases_the_key_for_a_retry(store: &dyn EventStore) {
    let k = key("charge-9");
    let first = claimed(store, &k, MINUTE, 1);
    store.fail(&first).unwrap();
    let second = claimed(store, &k, MINUTE, 2);
    assert!(in_progress(&store.claim(&k, MINUTE).unwrap()));
    // The first holder's token is no longer the key's claim.
    claim_lost(store.complete(&first, json!("late")), &k);
    claim_lost(store.fail(&first), &k);
    store.fail(&second).unwrap();
    let third = claimed(store, &k, MINUTE, 3);
    store.complete(&third, json!({ "charged": true })).unwrap();
    assert_eq!(
        store.claim(&k, MINUTE).unwrap(),
        Claim::Completed(json!({ "charged": true }))
    );
}

// proves R-IDEM-1: of 32 concurrent claims of one key exactly one runs; after it completes,
// every claim gets its outcome
pub fn thirty_two_racing_claims_one_runs(store: Arc<dyn EventStore>) {
    let k = key("payment-7f3a");
    let race = |store: &Arc<dyn EventStore>| -> Vec<Claim> {
        let start = Arc::new(Barrier::new(32));
        let threads: Vec<_> = (0..32)
            .map(|_| {
                let (store, start, k) = (store.clone(), start.clone(), k.clone());
                std::thread::spawn(move || {
                    start.wait();
                    store.claim(&k, MINUTE).unwrap()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    };
    let claims = race(&store);
    let winners: Vec<&ClaimToken> = claims
        .iter()
        .filter_map(|c| match c {
            Claim::Claimed(token) => Some(token),
            _ => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "{claims:?}");
    assert_eq!(winners[0].attempt(), 1);
    assert_eq!(claims.iter().filter(|c| in_progress(c)).count(), 31, "{claims:?}");
    store.complete(winners[0], json!({ "paid": 100 })).unwrap();
    let later = race(&store);
    assert!(
        later.iter().all(|c| *c == Claim::Completed(json!({ "paid": 100 }))),
        "{later:?}"
    );
}

// proves R-IDEM-1: a claim never finished is claimed again after its ttl, with the next
// attempt, and its old holder can no longer finish it (fencing)
pub fn an_expired_claim_is_claimed_again_and_its_old_holder_is_fenced(store: &dyn EventStore) {
    let k = key("email-3");
    let old = claimed(store, &k, Duration::from_millis(150), 1);
    assert!(in_progress(&store.claim(&k, MINUTE).unwrap()));
    std::thread::sleep(Duration::from_millis(300));
    let new = claimed(store, &k, MINUTE, 2);
    let lost = store.complete(&old, json!("stale"));
    assert!(matches!(&lost, Err(e) if e.to_string().contains("email-3")), "{lost:?}");
    claim_lost(lost, &k);
    claim_lost(store.fail(&old), &k);
    // The new holder's claim is untouched by the old one's attempts.
    assert!(in_progress(&store.claim(&k, MINUTE).unwrap()));
    store.complete(&new, json!("sent")).unwrap();
    assert_eq!(store.claim(&k, MINUTE).unwrap(), Claim::Completed(json!("sent")));
}

// proves R-IDEM-1: a claim past its ttl that nobody claimed again can still be finished
pub fn an_expired_claim_nobody_took_can_still_be_completed(store: &dyn EventStore) {
    let k = key("slow-1");
    let token = claimed(store, &k, Duration::ZERO, 1);
    std::thread::sleep(Duration::from_millis(20));
    store.complete(&token, json!(1)).unwrap();
    assert_eq!(store.claim(&k, MINUTE).unwrap(), Claim::Completed(json!(1)));
    let k = key("slow-2");
    let token = claimed(store, &k, Duration::ZERO, 1);
    std::thread::sleep(Duration::from_millis(20));
    store.fail(&token).unwrap();
    claimed(store, &k, MINUTE, 2);
}

// proves R-IDEM-1: a completed key is never claimable again within the retention, even long
// after its claim's ttl, and purging keeps it (and the records of released and expired claims)
pub fn a_completed_key_outlives_its_claims_ttl(store: &dyn EventStore) {
    let k = key("refund-5");
    let token = claimed(store, &k, Duration::from_millis(10), 1);
    store.complete(&token, json!({ "refunded": 5 })).unwrap();
    let released = claimed(store, &key("released"), MINUTE, 1);
    store.fail(&released).unwrap();
    claimed(store, &key("expired"), Duration::ZERO, 1);
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(store.purge_idempotency_keys(usize::MAX).unwrap(), 0);
    for ttl in [Duration::ZERO, Duration::from_millis(10), MINUTE] {
        assert_eq!(
            store.claim(&k, ttl).unwrap(),
            Claim::Completed(json!({ "refunded": 5 }))
        );
    }
    claimed(store, &key("released"), MINUTE, 2);
    claimed(store, &key("expired"), MINUTE, 2);
}

// proves R-IDEM-1: after the retention a completed key may be claimed again (its record,
// kept until purged, counts on), and purging deletes what is past its retention only
pub fn a_short_retention_forgets_and_purge_deletes(with_retention: fn(Duration) -> Arc<dyn EventStore>) {
    let store = with_retention(Duration::from_millis(100));
    let store = &*store;
    for name in ["a", "b", "c", "d"] {
        let token = claimed(store, &key(name), MINUTE, 1);
        store.complete(&token, json!(name)).unwrap();
        assert_eq!(store.claim(&key(name), MINUTE).unwrap(), Claim::Completed(json!(name)));
    }
    // Held: claimed, its ttl far from over.
    let held = claimed(store, &key("held"), MINUTE, 1);
    std::thread::sleep(Duration::from_millis(250));
    // Past its retention and not purged: claimable, the attempts counting on.
    let again = claimed(store, &key("a"), MINUTE, 2);
    // b, c and d are due; at most `max` go per call.
    assert_eq!(store.purge_idempotency_keys(2).unwrap(), 2);
    assert_eq!(store.purge_idempotency_keys(usize::MAX).unwrap(), 1);
    assert_eq!(store.purge_idempotency_keys(usize::MAX).unwrap(), 0);
    // Purged: free, from attempt 1.
    for name in ["b", "c", "d"] {
        claimed(store, &key(name), MINUTE, 1);
    }
    // Kept: the held claim, and a's new claim.
    assert!(in_progress(&store.claim(&key("held"), MINUTE).unwrap()));
    store.complete(&held, json!("held")).unwrap();
    store.complete(&again, json!("a again")).unwrap();
    assert_eq!(
        store.claim(&key("a"), MINUTE).unwrap(),
        Claim::Completed(json!("a again"))
    );
}

// proves R-IDEM-1: a token from before its key was purged never finishes a later claim of the
// key, though the later claim's attempt starts at 1 again (generations are never reused)
pub fn a_purged_keys_old_token_stays_fenced(with_retention: fn(Duration) -> Arc<dyn EventStore>) {
    let store = with_retention(Duration::from_millis(50));
    let store = &*store;
    let k = key("zombie");
    let old = claimed(store, &k, Duration::from_millis(10), 1);
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(store.purge_idempotency_keys(usize::MAX).unwrap(), 1);
    let new = claimed(store, &k, MINUTE, 1);
    claim_lost(store.complete(&old, json!("zombie")), &k);
    claim_lost(store.fail(&old), &k);
    store.complete(&new, json!("alive")).unwrap();
    assert_eq!(store.claim(&k, MINUTE).unwrap(), Claim::Completed(json!("alive")));
}

// proves R-IDEM-1 (input is checked, and any key text is bound, never spliced)
pub fn keys_are_checked_and_any_text_is_a_key(store: &dyn EventStore) {
    for bad in [String::new(), "k".repeat(256), "k\u{0}".to_owned(), "é".repeat(128)] {
        assert_eq!(
            IdempotencyKey::new(bad.clone()),
            Err(InvalidInput::IdempotencyKey),
            "{bad:?}"
        );
        let as_store_error: StoreError = IdempotencyKey::new(bad).unwrap_err().into();
        assert!(matches!(
            as_store_error,
            StoreError::InvalidInput(InvalidInput::IdempotencyKey)
        ));
    }
    for odd in ["k'; drop table x; -- $1 é", "%_\\", &"é".repeat(127), &"k".repeat(255)] {
        let k = key(odd);
        let token = claimed(store, &k, MINUTE, 1);
        store.complete(&token, json!(odd)).unwrap();
        assert_eq!(store.claim(&k, MINUTE).unwrap(), Claim::Completed(json!(odd)));
    }
}

// proves R-IDEM-1: an outcome the store cannot hold is a typed error and the claim stays open
pub fn an_unstorable_outcome_leaves_the_claim_open(store: &dyn EventStore) {
    let k = key("order-4");
    let token = claimed(store, &k, MINUTE, 1);
    for bad in [json!({ "note": "a\u{0}b" }), json!({ "a\u{0}": 1 }), json!(["\u{0}"])] {
        assert!(
            matches!(
                store.complete(&token, bad),
                Err(StoreError::InvalidInput(InvalidInput::NulCharacter))
            ),
            "a NUL character is refused"
        );
    }
    assert!(in_progress(&store.claim(&k, MINUTE).unwrap()));
    store.complete(&token, json!({ "note": "ab" })).unwrap();
    assert_eq!(
        store.claim(&k, MINUTE).unwrap(),
        Claim::Completed(json!({ "note": "ab" }))
    );
}

// proves R-IDEM-1: a token finishes its own key's claim only, whatever other keys are at
pub fn a_token_finishes_only_its_own_key(store: &dyn EventStore) {
    let (a, b) = (key("key-a"), key("key-b"));
    let token_a = claimed(store, &a, MINUTE, 1);
    let token_b = claimed(store, &b, MINUTE, 1);
    assert_ne!(token_a, token_b);
    store.complete(&token_a, json!("a")).unwrap();
    assert!(in_progress(&store.claim(&b, MINUTE).unwrap()), "b is untouched");
    // a's spent token does not touch b either.
    claim_lost(store.fail(&token_a), &a);
    assert!(in_progress(&store.claim(&b, MINUTE).unwrap()));
    store.fail(&token_b).unwrap();
    assert_eq!(store.claim(&a, MINUTE).unwrap(), Claim::Completed(json!("a")));
    claimed(store, &b, MINUTE, 2);
}

/// Instantiates every check as a test of the stores `$make` (a fresh one each, default
/// retention) and `$with_retention` (a `fn(Duration) -> Arc<dyn EventStore>`) return.
#[macro_export]
macro_rules! idempotency_tests {
    ($module:ident, $make:expr, $with_retention:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn claim_then_complete_replays_the_outcome() {
                store::idempotency::claim_then_complete_replays_the_outcome(&*$make);
            }
            #[test]
            fn fail_releases_the_key_for_a_retry() {
                store::idempotency::fail_releases_the_key_for_a_retry(&*$make);
            }
            #[test]
            fn thirty_two_racing_claims_one_runs() {
                store::idempotency::thirty_two_racing_claims_one_runs($make);
            }
            #[test]
            fn an_expired_claim_is_claimed_again_and_its_old_holder_is_fenced() {
                store::idempotency::an_expired_claim_is_claimed_again_and_its_old_holder_is_fenced(&*$make);
            }
            #[test]
            fn an_expired_claim_nobody_took_can_still_be_completed() {
                store::idempotency::an_expired_claim_nobody_took_can_still_be_completed(&*$make);
            }
            #[test]
            fn a_completed_key_outlives_its_claims_ttl() {
                store::idempotency::a_completed_key_outlives_its_claims_ttl(&*$make);
            }
            #[test]
            fn a_short_retention_forgets_and_purge_deletes() {
                store::idempotency::a_short_retention_forgets_and_purge_deletes($with_retention);
            }
            #[test]
            fn a_purged_keys_old_token_stays_fenced() {
                store::idempotency::a_purged_keys_old_token_stays_fenced($with_retention);
            }
            #[test]
            fn keys_are_checked_and_any_text_is_a_key() {
                store::idempotency::keys_are_checked_and_any_text_is_a_key(&*$make);
            }
            #[test]
            fn an_unstorable_outcome_leaves_the_claim_open() {
                store::idempotency::an_unstorable_outcome_leaves_the_claim_open(&*$make);
            }
            #[test]
            fn a_token_finishes_only_its_own_key() {
                store::idempotency::a_token_finishes_only_its_own_key(&*$make);
            }
        }
    };
}
