//! The derived models' lineage (SPEC §11, `revshare_core::licence`): chains at any depth, cycles
//! refused, and the one file format.

use revshare_core::ids::ModelId;
use revshare_core::licence::{Lineage, LineageError};

fn m(id: &str) -> ModelId {
    ModelId::parse(id).expect("a model id")
}

#[test]
fn a_chain_reaches_the_first_covered_ancestor() {
    let lineage = Lineage::new([(m("ft2"), m("ft1")), (m("ft1"), m("base")), (m("other"), m("elsewhere"))]).expect("no cycle");
    let covered = [m("base")];
    assert_eq!(lineage.base_among("ft2", &covered), Some(&m("base")));
    assert_eq!(lineage.base_among("ft1", &covered), Some(&m("base")));
    assert_eq!(lineage.base_among("base", &covered), None, "a base model derives from nothing");
    assert_eq!(lineage.base_among("other", &covered), None);
    // A covered intermediate model is met first.
    assert_eq!(lineage.base_among("ft2", &[m("base"), m("ft1")]), Some(&m("ft1")));
    assert_eq!(lineage.chains_of(["ft2"]), Lineage::new([(m("ft2"), m("ft1")), (m("ft1"), m("base"))]).expect("no cycle"));
}

#[test]
fn cycles_and_two_parents_are_refused() {
    let cycle = Lineage::new([(m("a"), m("b")), (m("b"), m("c")), (m("c"), m("a"))]).expect_err("a cycle");
    assert_eq!(cycle.to_string(), "model a derives from itself (a → b → c → a); a chain of derivations must end at a base model");
    assert!(matches!(Lineage::new([(m("a"), m("a"))]), Err(LineageError::Cycle { .. })));
    assert!(matches!(Lineage::new([(m("a"), m("b")), (m("a"), m("c"))]), Err(LineageError::TwoParents { .. })));
    assert!(Lineage::new([(m("a"), m("b")), (m("a"), m("b"))]).is_ok(), "the same pair twice is one pair");
}

#[test]
fn the_file_is_the_model_list() {
    let text = br#"[{"id": "base", "owner": "lic", "derived_from": null}, {"id": "ft", "owner": "lic", "derived_from": "base"}]"#;
    let lineage = Lineage::from_json("models.json", text).expect("a lineage");
    assert_eq!(lineage, Lineage::new([(m("ft"), m("base"))]).expect("no cycle"));
    let back = lineage.to_json().to_string();
    assert_eq!(back, r#"[{"derived_from":"base","id":"ft"}]"#);
    assert_eq!(Lineage::from_json("models.json", back.as_bytes()), Ok(lineage));
    let bad = Lineage::from_json("models.json", br#"[{"id": "ft", "parent": "base"}]"#).expect_err("an unknown member");
    assert!(bad.to_string().starts_with("models.json item 0 member `parent`: not a member of a model"), "{bad}");
    let bad = Lineage::from_json("models.json", b"[{\"id\": \"ft\",\n \"derived_from\": 7}]").expect_err("a number");
    assert!(bad.to_string().starts_with("models.json item 0 member `derived_from`: not a string"), "{bad}");
}

/// A record's scopes keep its exclusivity scope and whether it is restricted in one index, and
/// an index stored before restrictions existed (an exclusivity scope, or none) reads the same.
#[test]
fn a_records_scopes_are_one_index_and_old_indexes_read_the_same() {
    use revshare_core::agreement::{RESTRICTED, Scopes};
    for exclusive in [None, Some(0), Some(7), Some(999)] {
        for restricted in [false, true] {
            let scopes = Scopes { exclusive, restricted };
            assert_eq!(Scopes::from_index(scopes.index()), scopes);
        }
        assert_eq!(Scopes::from_index(exclusive), Scopes { exclusive, restricted: false }, "as stored before restrictions");
    }
    assert_eq!(Scopes { exclusive: None, restricted: true }.index(), Some(RESTRICTED));
}
