//! `integration::Command` (validated route and payload, typed errors that hand both back, a
//! stable fingerprint) and `integration::effect_key` (R-INT-2: a function of subscriber,
//! position and index only).

use humpyard::integration::{effect_key, Command, CommandProblem, EncodeCommandError, RouteName};
use humpyard::StreamId;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Reserve {
    sku: String,
    qty: u32,
}

// proves R-API-2: a bad command is a typed error that hands the route and payload back
#[test]
fn a_bad_route_or_payload_is_a_typed_error_that_hands_both_back() {
    let refused = Command::new("no spaces", json!({ "keep": "me" })).unwrap_err();
    assert!(matches!(refused.problem(), CommandProblem::RouteName(_)));
    assert!(refused.to_string().contains("no spaces"));
    // The rule it breaks is the source, said there and not again (R-API-2).
    let rule = std::error::Error::source(&refused).unwrap().to_string();
    assert!(!refused.to_string().contains(&rule), "{refused} / {rule}");
    assert_eq!(refused.into_parts(), ("no spaces".to_owned(), json!({ "keep": "me" })));

    let refused = Command::new("inventory.reserve", json!({ "note": "a\u{0}b" })).unwrap_err();
    assert_eq!(refused.problem(), &CommandProblem::NulCharacter);
    for bad in ["", ".leading-dot", "ü", &"r".repeat(256)] {
        assert!(Command::new(bad, json!(null)).is_err(), "{bad:?}");
        assert!(RouteName::new(bad).is_err(), "{bad:?}");
    }
}

// proves R-API-2
#[test]
fn typed_payloads_round_trip_and_a_wrong_type_names_the_route() {
    let command = Command::encode(
        "inventory.reserve",
        &Reserve {
            sku: "A-1".into(),
            qty: 2,
        },
    )
    .unwrap();
    assert_eq!(command.route().as_str(), "inventory.reserve");
    assert_eq!(
        command.decode::<Reserve>().unwrap(),
        Reserve {
            sku: "A-1".into(),
            qty: 2
        }
    );
    let wrong = command.decode::<Vec<u8>>().unwrap_err();
    assert_eq!(wrong.route().as_str(), "inventory.reserve");
    assert!(wrong.to_string().contains("inventory.reserve"));
    assert!(matches!(
        Command::encode("bad route", &1),
        Err(EncodeCommandError::Invalid(_))
    ));
    // A map with non-string keys does not serialize to JSON: a typed error, not a panic.
    let unserializable: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
    assert!(matches!(
        Command::encode("inventory.reserve", &unserializable),
        Err(EncodeCommandError::Serialize { .. })
    ));
}

// proves R-API-2
#[test]
fn the_fingerprint_is_sha256_of_the_canonical_json() {
    let command = Command::new(
        "inventory.reserve",
        json!({ "tags": ["x", "y"], "sku": "A-1", "qty": 2 }),
    )
    .unwrap();
    assert_eq!(
        command.canonical_json(),
        r#"{"payload":{"qty":2,"sku":"A-1","tags":["x","y"]},"route":"inventory.reserve"}"#
    );
    // `printf '%s' '<the text above>' | sha256sum`: pinned, so it never drifts between
    // versions (fixture files are named by it).
    assert_eq!(
        command.fingerprint_hex(),
        "64bd8f5d87852bb86545e5aba26f0702d2bf03b36698a05cd5af4a0883c1341c"
    );
    let other = Command::new(
        "inventory.reserve",
        json!({ "sku": "A-1", "qty": 3, "tags": ["x", "y"] }),
    )
    .unwrap();
    assert_ne!(command.fingerprint(), other.fingerprint());
}

// proves R-INT-2: an effect's key depends on (subscriber, position, index) only
#[test]
fn effect_keys_are_deterministic_and_long_subscribers_are_hashed() {
    let subscriber = StreamId::new("orders-reactor").unwrap();
    assert_eq!(effect_key(&subscriber, 42, 0).as_str(), "fx1:42:0:orders-reactor");
    assert_eq!(effect_key(&subscriber, 42, 0), effect_key(&subscriber, 42, 0));
    assert_ne!(effect_key(&subscriber, 42, 0), effect_key(&subscriber, 42, 1));
    assert_ne!(effect_key(&subscriber, 42, 0), effect_key(&subscriber, 43, 0));

    let long = StreamId::new(&"s".repeat(255)).unwrap();
    let key = effect_key(&long, u64::MAX, u32::MAX);
    assert_eq!(
        key.as_str(),
        format!(
            "fx1h:{}:{}:123eafc7865f747de9bd3a0bec0958b2b40bb6cbc43730059eb2a1e9a1ba9056",
            u64::MAX,
            u32::MAX
        )
    );
}

proptest! {
    // Distinct (subscriber, position, index) triples never share a key, in either form.
// proves R-API-2
    #[test]
    fn distinct_triples_get_distinct_keys(
        triples in proptest::collection::vec(
            ("[a-z][a-z0-9-]{0,8}|[a-z]{250,255}", 0u64..4, 0u32..4), 1..40)
    ) {
        let mut seen = std::collections::HashMap::new();
        for (name, position, index) in triples {
            let subscriber = StreamId::new(&name).unwrap();
            let key = effect_key(&subscriber, position, index);
            prop_assert!(key.as_str().len() <= 255);
            if let Some(earlier) = seen.insert(key.clone(), (name.clone(), position, index)) {
                prop_assert_eq!(earlier, (name, position, index), "two triples share {}", key);
            }
        }
    }
}
