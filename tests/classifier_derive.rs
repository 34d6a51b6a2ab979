//! What `#[derive(Classifier)]` generates: rules checked in declaration order,
//! first match wins, the default variant otherwise; keys as written or the
//! variant's name.
#![deny(warnings, clippy::pedantic)]

use flexi_socket::{Classifier, ClientType};

#[derive(Classifier, Debug, PartialEq, Eq)]
enum Panel {
    #[client_type = "001"]
    #[classify(prefix = "!!")]
    Alarm,
    #[client_type = "002"]
    #[classify(suffix = "#END")]
    Sensor,
    #[client_type = "003"]
    #[classify(contains = "HEARTBEAT")]
    Heartbeat,
    #[client_type = "004"]
    #[classify(exact = "PING")]
    Ping,
    #[client_type = "005"]
    #[classify(prefix = b"\x02", suffix = b"\x03")]
    #[classify(contains = b"\x00\xff")]
    Binary,
    #[classify(default)]
    Other,
}

#[test]
fn prefix_matches_the_start_only() {
    assert_eq!(Panel::classify(b"!!1234"), Panel::Alarm);
    assert_eq!(Panel::classify(b"!!"), Panel::Alarm);
    assert_eq!(Panel::classify(b"x!!"), Panel::Other);
    assert_eq!(Panel::classify(b"!"), Panel::Other);
}

#[test]
fn suffix_matches_the_end_only() {
    assert_eq!(Panel::classify(b"21.5C#END"), Panel::Sensor);
    assert_eq!(Panel::classify(b"#END"), Panel::Sensor);
    assert_eq!(Panel::classify(b"#END "), Panel::Other);
}

#[test]
fn contains_matches_anywhere() {
    assert_eq!(Panel::classify(b"HEARTBEAT"), Panel::Heartbeat);
    assert_eq!(Panel::classify(b"id=7 HEARTBEAT ok"), Panel::Heartbeat);
    assert_eq!(Panel::classify(b"HEARTBEA"), Panel::Other);
}

#[test]
fn exact_matches_the_whole_frame_only() {
    assert_eq!(Panel::classify(b"PING"), Panel::Ping);
    assert_eq!(Panel::classify(b"PING "), Panel::Other);
    assert_eq!(Panel::classify(b"PIN"), Panel::Other);
}

#[test]
fn byte_patterns_and_several_rules_on_one_variant() {
    assert_eq!(Panel::classify(b"\x02payload"), Panel::Binary);
    assert_eq!(Panel::classify(b"payload\x03"), Panel::Binary);
    assert_eq!(Panel::classify(b"a\x00\xffb"), Panel::Binary);
    assert_eq!(Panel::classify(b"a\x00b\xff"), Panel::Other);
}

#[test]
fn no_match_and_empty_frames_are_the_default() {
    assert_eq!(Panel::classify(b"hello"), Panel::Other);
    assert_eq!(Panel::classify(b""), Panel::Other);
}

#[test]
fn the_first_declared_rule_wins() {
    // Matches Alarm's prefix, Sensor's suffix, Heartbeat's contains and Binary's suffix.
    assert_eq!(Panel::classify(b"!!HEARTBEAT#END\x03"), Panel::Alarm);
    assert_eq!(Panel::classify(b"HEARTBEAT#END"), Panel::Sensor);
    assert_eq!(Panel::classify(b"\x02HEARTBEAT"), Panel::Heartbeat);
}

#[test]
fn client_type_is_the_written_key_or_the_variant_name() {
    assert_eq!(Panel::Alarm.client_type(), "001");
    assert_eq!(Panel::Binary.client_type(), "005");
    assert_eq!(Panel::Other.client_type(), "Other");
    assert_eq!(ClientType::of(&Panel::Ping), ClientType::from_static("004"));
}

#[test]
fn client_types_lists_every_key_in_declaration_order() {
    let keys = Panel::client_types().expect("a derived classifier lists its keys");
    let keys: Vec<&str> = keys.iter().map(ClientType::as_str).collect();
    assert_eq!(keys, ["001", "002", "003", "004", "005", "Other"]);
}

/// A classifier whose only variant is the default.
#[derive(Classifier, Debug, PartialEq, Eq)]
enum Single {
    #[client_type = "all"]
    #[classify(default)]
    Everyone,
}

#[test]
fn a_default_only_classifier_takes_every_frame() {
    assert_eq!(Single::classify(b"anything"), Single::Everyone);
    assert_eq!(Single::classify(b"").client_type(), "all");
    assert_eq!(
        Single::client_types(),
        Some(vec![ClientType::from_static("all")])
    );
}

/// The default variant may have rules of its own, and keys may be raw strings.
#[derive(Classifier, Debug, PartialEq, Eq)]
enum Mixed {
    #[classify(exact = "first")]
    First,
    #[client_type = r"fallback"]
    #[classify(default, prefix = "f")]
    Fallback,
    // `prefix = "fr"` is shadowed by Fallback's `prefix = "f"`, but `suffix = "m"`
    // keeps the variant reachable, so the derive accepts it.
    #[classify(prefix = "fr", suffix = "m")]
    Later,
}

#[test]
fn the_default_variant_can_also_have_rules() {
    assert_eq!(Mixed::classify(b"first"), Mixed::First);
    assert_eq!(Mixed::classify(b"fig"), Mixed::Fallback);
    assert_eq!(Mixed::classify(b"xyz"), Mixed::Fallback);
    assert_eq!(Mixed::Fallback.client_type(), "fallback");
}

#[test]
fn a_variant_with_a_shadowed_rule_is_reached_by_its_live_one() {
    // Matches Fallback's prefix and both of Later's rules: the first declared wins.
    assert_eq!(Mixed::classify(b"from"), Mixed::Fallback);
    assert_eq!(Mixed::classify(b"broom"), Mixed::Later);
    assert_eq!(Mixed::Later.client_type(), "Later");
}

/// Prefix and exact rules only: their first bytes often settle the type.
#[derive(Classifier, Debug, PartialEq, Eq)]
enum Gate {
    #[classify(prefix = "\n")]
    Framed,
    #[classify(exact = "PING", prefix = "GET ")]
    Text,
    #[classify(default)]
    Stranger,
}

#[test]
fn classify_early_decides_once_no_rule_can_change_its_mind() {
    assert_eq!(Gate::classify_early(b"\n12"), Some(Gate::Framed));
    assert_eq!(Gate::classify_early(b"GET /"), Some(Gate::Text));
    // No rule can match a frame that starts like these.
    assert_eq!(Gate::classify_early(b"\x16\x03\x01"), Some(Gate::Stranger));
    assert_eq!(Gate::classify_early(b"GEX"), Some(Gate::Stranger));
    assert_eq!(Gate::classify_early(b"PINGS"), Some(Gate::Stranger));
}

#[test]
fn classify_early_waits_while_a_rule_may_still_match() {
    assert_eq!(Gate::classify_early(b"GE"), None);
    assert_eq!(Gate::classify_early(b"P"), None);
    // `exact = "PING"` matches this frame if it ends here, not if it goes on.
    assert_eq!(Gate::classify_early(b"PING"), None);
}

#[test]
fn classify_early_stops_at_a_rule_that_needs_the_whole_frame() {
    // Alarm's prefix settles it before any later rule is asked.
    assert_eq!(Panel::classify_early(b"!!1"), Some(Panel::Alarm));
    // Any frame may still end with Sensor's "#END".
    assert_eq!(Panel::classify_early(b"x"), None);
    assert_eq!(Mixed::classify_early(b"fo"), Some(Mixed::Fallback));
    assert_eq!(Mixed::classify_early(b"fi"), None);
    assert_eq!(Mixed::classify_early(b"x"), None);
    assert_eq!(Single::classify_early(b"x"), Some(Single::Everyone));
}

mod early_decisions_are_final {
    use super::{Gate, Mixed, Panel};
    use flexi_socket::Classifier;
    use proptest::prelude::*;

    /// Bytes of every pattern above, and a few of none, so that frames
    /// often come close to a rule.
    const ALPHABET: &[u8] = b"!#ENDHBATPIGfrmis x\n\x02\x03\x00\xff";

    fn frames() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(proptest::sample::select(ALPHABET), 1..14)
    }

    /// Every decision `classify_early` takes on a frame's first bytes is
    /// the one `classify` gives the whole frame.
    fn holds<C: Classifier + PartialEq + std::fmt::Debug>(frame: &[u8]) {
        let whole = C::classify(frame);
        for end in 1..=frame.len() {
            if let Some(early) = C::classify_early(&frame[..end]) {
                assert_eq!(early, whole, "{:?} of {:?}", &frame[..end], frame);
            }
        }
    }

    proptest! {
        #[test]
        fn for_every_start_of_a_frame(frame in frames()) {
            holds::<Gate>(&frame);
            holds::<Panel>(&frame);
            holds::<Mixed>(&frame);
        }
    }
}
