//! Typed events: a stored event decoded into the user's serde type, with a typed error that
//! says which event failed; new events encoded from one; `uuid` re-exported for `with_id`
//! (R-FT-5: an event that cannot be decoded is reported at its position).

use humpyard::store::{EventStore, ExpectedVersion, InMemoryStore, NewEvent};
use humpyard::uuid::Uuid;
use humpyard::StreamId;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Deposited {
    amount: i64,
    currency: String,
}

#[derive(Debug, PartialEq, Deserialize)]
struct Trace {
    request: String,
}

#[test]
fn events_decode_into_the_users_type_and_errors_say_which_event() {
    let store = InMemoryStore::new();
    let stream = StreamId::new("acct-1").unwrap();
    let id = Uuid::now_v7();
    let typed = NewEvent::encode(
        "deposited",
        &Deposited {
            amount: 5,
            currency: "EUR".to_owned(),
        },
    )
    .unwrap()
    .with_id(id)
    .with_metadata(json!({ "request": "r-1" }));
    let untyped = NewEvent::new("deposited", json!({ "amount": "five" }));
    store
        .append(&stream, ExpectedVersion::NoStream, vec![typed, untyped])
        .unwrap();
    let events = store.read_stream(&stream, 0, 10).unwrap();
    assert_eq!(events[0].id, id);
    assert_eq!(
        events[0].decode::<Deposited>().unwrap(),
        Deposited {
            amount: 5,
            currency: "EUR".to_owned()
        }
    );
    assert_eq!(
        events[0].decode_metadata::<Trace>().unwrap(),
        Trace {
            request: "r-1".to_owned()
        }
    );
    let error = events[1].decode::<Deposited>().unwrap_err();
    assert_eq!(
        (error.position, error.stream.as_str(), error.event_type.as_str()),
        (2, "acct-1", "deposited")
    );
    assert!(!error.metadata);
    assert!(error.to_string().contains("position 2"), "{error}");
    assert!(std::error::Error::source(&error).is_some());
    let error = events[1].decode_metadata::<Trace>().unwrap_err();
    assert!(error.metadata);
}

#[test]
fn data_that_cannot_be_encoded_is_an_error_not_a_panic() {
    let mut odd = std::collections::HashMap::new();
    odd.insert((1, 2), "a tuple key has no JSON form");
    assert!(NewEvent::encode("odd", &odd).is_err());
}
