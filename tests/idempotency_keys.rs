//! Idempotency keys on the Postgres store (R-IDEM-1), on a throwaway server (or
//! `DATABASE_URL`).

mod store;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use humpyard::store::{Claim, InvalidInput, StoreError};
use serde_json::json;
use store::server;

// proves R-IDEM-1: of 32 concurrent claims of one key, exactly one runs
#[test]
fn thirty_two_threads_claim_one_key_and_exactly_one_runs() {
    let store = Arc::new(server::fresh_store());
    let start = Arc::new(Barrier::new(32));
    let claims: Vec<Claim> = (0..32)
        .map(|_| {
            let (store, start) = (store.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                store.claim("payment-7f3a", Duration::from_secs(60)).unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let winners = claims.iter().filter(|c| **c == Claim::Claimed).count();
    assert_eq!(winners, 1, "{claims:?}");
    assert!(claims.iter().all(|c| matches!(c, Claim::Claimed | Claim::InProgress)));
}

#[test]
fn outcomes_are_stored_for_replay_and_keys_expire() {
    let store = server::fresh_store();
    assert_eq!(store.claim("order-1", Duration::from_secs(60)).unwrap(), Claim::Claimed);
    assert_eq!(
        store.claim("order-1", Duration::from_secs(60)).unwrap(),
        Claim::InProgress
    );
    store.complete("order-1", json!({ "receipt": 42 })).unwrap();
    assert_eq!(
        store.claim("order-1", Duration::from_secs(60)).unwrap(),
        Claim::Completed(json!({ "receipt": 42 }))
    );

    assert_eq!(store.claim("order-2", Duration::from_secs(60)).unwrap(), Claim::Claimed);
    store.fail("order-2", json!("card declined")).unwrap();
    assert_eq!(
        store.claim("order-2", Duration::from_secs(60)).unwrap(),
        Claim::Failed(json!("card declined"))
    );

    // A claim that expired (its holder died, say) can be taken again.
    assert_eq!(store.claim("order-3", Duration::ZERO).unwrap(), Claim::Claimed);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(store.claim("order-3", Duration::from_secs(60)).unwrap(), Claim::Claimed);

    // Any text is a key (it is bound, never spliced); empty and over-long are typed errors.
    assert_eq!(
        store
            .claim("k'; drop table x; -- $1 é", Duration::from_secs(1))
            .unwrap(),
        Claim::Claimed
    );
    for bad in [String::new(), "k".repeat(256), "k\u{0}".to_owned()] {
        assert!(matches!(
            store.claim(&bad, Duration::from_secs(1)),
            Err(StoreError::InvalidInput(InvalidInput::IdempotencyKey))
        ));
    }
    // An outcome PostgreSQL cannot hold is a typed error, and the claim stays open for a
    // storable one.
    assert_eq!(store.claim("order-4", Duration::from_secs(60)).unwrap(), Claim::Claimed);
    assert!(matches!(
        store.complete("order-4", json!({ "note": "a\u{0}b" })),
        Err(StoreError::InvalidInput(InvalidInput::NulCharacter))
    ));
    store.complete("order-4", json!({ "note": "ab" })).unwrap();
    assert_eq!(
        store.claim("order-4", Duration::from_secs(60)).unwrap(),
        Claim::Completed(json!({ "note": "ab" }))
    );
}
