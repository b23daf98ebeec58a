//! StreamId validation: R-SEC-2 (hostile ids get a typed error), R-API-1 (opaque, validated).

use humpyard::{InvalidStreamId, StreamId};
use proptest::prelude::*;

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.:@+/=".contains(&b)
}

/// The rules, written independently of the implementation.
fn is_valid(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && b.len() <= 255 && b[0].is_ascii_alphanumeric() && b.iter().all(|&c| allowed(c))
}

// proves R-SEC-2
#[test]
fn hostile_ids_get_typed_errors() {
    let cases: Vec<(String, InvalidStreamId)> = vec![
        (String::new(), InvalidStreamId::Empty),
        (
            "a'; DROP TABLE events; --".into(),
            InvalidStreamId::BadByte { at: 1, byte: b'\'' },
        ),
        ("a;b".into(), InvalidStreamId::BadByte { at: 1, byte: b';' }),
        ("a\0b".into(), InvalidStreamId::BadByte { at: 1, byte: 0 }),
        ("a\nlevel=error".into(), InvalidStreamId::BadByte { at: 1, byte: b'\n' }),
        ("a\u{1b}[31m".into(), InvalidStreamId::BadByte { at: 1, byte: 0x1b }),
        ("é".into(), InvalidStreamId::BadStart { byte: 0xc3 }),
        ("aé".into(), InvalidStreamId::BadByte { at: 1, byte: 0xc3 }),
        ("-leading".into(), InvalidStreamId::BadStart { byte: b'-' }),
        ("a b".into(), InvalidStreamId::BadByte { at: 1, byte: b' ' }),
        ("a\"b".into(), InvalidStreamId::BadByte { at: 1, byte: b'"' }),
        ("a".repeat(256), InvalidStreamId::TooLong { len: 256 }),
        ("a".repeat(1 << 20), InvalidStreamId::TooLong { len: 1 << 20 }),
    ];
    for (text, want) in cases {
        assert_eq!(StreamId::new(&text).unwrap_err(), want);
        assert_eq!(text.parse::<StreamId>().unwrap_err(), want);
        assert_eq!(StreamId::try_from(text.as_str()).unwrap_err(), want);
        // The error text never echoes the input (safe to log).
        let message = want.to_string();
        assert!(!message.contains('\n') && !message.contains('\0') && message.len() < 200);
    }
}

// proves R-SEC-2, R-API-1
#[test]
fn boundaries_and_every_allowed_character() {
    assert!(StreamId::new(&"a".repeat(255)).is_ok());
    let all = "aZ09-_.:@+/=";
    let id = StreamId::new(all).unwrap();
    assert_eq!(id.as_str(), all);
    assert_eq!(id.to_string(), all);
    assert_eq!(format!("{id:?}"), format!("StreamId({all})"));
    assert_eq!(
        StreamId::new("0starts-with-digit").unwrap().as_str(),
        "0starts-with-digit"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    // proves R-SEC-2: arbitrary strings never panic; the verdict matches the rules.
    #[test]
    fn arbitrary_strings_are_judged_by_the_rules(s in any::<String>()) {
        match StreamId::new(&s) {
            Ok(id) => {
                prop_assert!(is_valid(&s));
                prop_assert_eq!(id.as_str(), s.as_str());
            }
            Err(_) => prop_assert!(!is_valid(&s)),
        }
    }

    // proves R-SEC-2: valid ids round-trip through Display / FromStr with equal hashes.
    #[test]
    fn valid_ids_round_trip(s in "[A-Za-z0-9][A-Za-z0-9_.:@+/=-]{0,254}") {
        let id = StreamId::new(&s).unwrap();
        let back: StreamId = id.to_string().parse().unwrap();
        prop_assert_eq!(&back, &id);
        prop_assert_eq!(back.hash_u64(), id.hash_u64());
    }

    // proves R-SEC-2: one bad byte anywhere is reported at its index.
    #[test]
    fn a_bad_byte_is_located(prefix in "[a-z]{1,20}", bad in prop::sample::select(vec![' ', '\'', '"', ';', '\0', '\n', '\\', '%', '*', '#', 'ü']), suffix in "[a-z]{0,20}") {
        let s = format!("{prefix}{bad}{suffix}");
        match StreamId::new(&s) {
            Err(InvalidStreamId::BadByte { at, .. }) => prop_assert_eq!(at, prefix.len()),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}
