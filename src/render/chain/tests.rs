//! Chain ordering: fixtures with and without key identifiers, forks, gaps and cycles, and
//! property tests over every permutation.

use proptest::prelude::*;

use super::*;
use crate::render::fixtures::fixture;
use crate::render::pem;

fn cert(name: &str) -> Vec<u8> {
    let blocks = pem::parse(&fixture(&format!("{name}.pem"))).unwrap();
    blocks[0].der.expose().to_vec()
}

fn certs(names: &[&str]) -> Vec<Vec<u8>> {
    names.iter().map(|name| cert(name)).collect()
}

/// The certificates in the order `order` puts them.
fn ordered(input: &[Vec<u8>]) -> (Vec<Vec<u8>>, Option<ChainProblem>) {
    let Ordered { order, problem } = super::order(input);
    (order.iter().map(|i| input[*i].clone()).collect(), problem)
}

/// Every chain of the fixtures, leaf first.
const CHAINS: &[&[&str]] = &[
    &["ki-leaf4", "ki-int2", "ki-int1", "ki-root"],
    &["ki-leaf3", "ki-int1", "ki-root"],
    &["ki-leaf2", "ki-root"],
    &["noki-leaf4", "noki-int2", "noki-int1", "noki-root"],
    &["noki-leaf3", "noki-int1", "noki-root"],
    &["noki-leaf2", "noki-root"],
    &["rsa2048.self"],
    // No root: the top intermediate's issuer is simply absent.
    &["ki-leaf4", "ki-int2", "ki-int1"],
    &["noki-leaf4", "noki-int2"],
];

#[test]
fn orders_every_fixture_chain_from_any_rotation() {
    for chain in CHAINS {
        let expected = certs(chain);
        for rotation in 0..expected.len() {
            let mut input = expected.clone();
            input.rotate_left(rotation);
            assert_eq!(ordered(&input), (expected.clone(), None), "{chain:?}");
        }
    }
}

#[test]
fn matches_the_openssl_computed_order() {
    for case in ["ki-chain4", "noki-chain4", "ki-chain3", "noki-chain2"] {
        let expected: Vec<Vec<u8>> = pem::parse(&fixture(&format!("{case}.expected.crt")))
            .unwrap()
            .iter()
            .map(|b| b.der.expose().to_vec())
            .collect();
        let mut input = expected.clone();
        input.reverse();
        assert_eq!(ordered(&input).0, expected, "{case}");
    }
}

#[test]
fn empty_is_a_chain() {
    assert_eq!(
        order::<Vec<u8>>(&[]),
        Ordered {
            order: vec![],
            problem: None
        }
    );
}

fn problem(names: &[&str]) -> (Vec<usize>, ChainProblem) {
    let Ordered { order, problem } = order(&certs(names));
    (order, problem.expect("not a chain"))
}

#[test]
fn a_gap_keeps_the_stored_order() {
    // int1 is missing between int2 and the root.
    let (order, problem) = problem(&["ki-root", "ki-leaf4", "ki-int2"]);

    assert_eq!(order, [0, 1, 2]);
    assert_eq!(
        problem.to_string(),
        "2 certificates issued none of the others: 1 (O=akv fixtures,CN=ki root), \
         2 (O=akv fixtures,CN=ki leaf4)"
    );
}

#[test]
fn a_fork_keeps_the_stored_order() {
    // int1 issued both int2 and leaf3.
    let (order, problem) = problem(&["ki-int2", "ki-leaf3", "ki-int1", "ki-leaf4"]);

    assert_eq!(order, [0, 1, 2, 3]);
    assert!(
        matches!(problem, ChainProblem::SeveralLeaves { .. }),
        "{problem}"
    );
}

#[test]
fn a_cycle_keeps_the_stored_order() {
    let (order, problem) = problem(&["cycle-a", "cycle-b"]);

    assert_eq!(order, [0, 1]);
    assert_eq!(problem, ChainProblem::Cycle);
}

#[test]
fn a_leaf_under_a_cycle_is_reported() {
    // The leaf's issuer name matches neither, so it stands apart: two leaves is not possible
    // here, but certificates off the leaf's path are.
    let (_, problem) = problem(&["cycle-a", "ki-leaf2", "cycle-b", "ki-root"]);

    assert!(
        matches!(problem, ChainProblem::OffChain { .. }),
        "{problem}"
    );
}

#[test]
fn two_possible_issuers_keep_the_stored_order() {
    let (order, problem) = problem(&["ki-leaf2", "ki-root", "ki-root"]);

    assert_eq!(order, [0, 1, 2]);
    assert!(
        problem
            .to_string()
            .starts_with("certificate 1 (O=akv fixtures,CN=ki leaf2) could have been issued by 2"),
        "{problem}"
    );
}

#[test]
fn unrelated_hierarchies_are_not_one_chain() {
    // Names alike ("... root") but keys and names differ: ki-leaf2 links to ki-root only.
    let (_, problem) = problem(&["ki-leaf2", "noki-root"]);
    assert!(
        matches!(problem, ChainProblem::SeveralLeaves { .. }),
        "{problem}"
    );
}

#[test]
fn unreadable_certificates_keep_the_stored_order() {
    let mut input = certs(&["ki-leaf2", "ki-root"]);
    input.insert(1, b"not a certificate".to_vec());

    let Ordered { order, problem } = order(&input);

    assert_eq!(order, [0, 1, 2]);
    assert_eq!(
        problem.unwrap().to_string(),
        "certificate 2 is not valid X.509"
    );
}

/// Every certificate of the fixtures, for sets that are not chains.
const ALL: &[&str] = &[
    "ki-root",
    "ki-int1",
    "ki-int2",
    "ki-leaf2",
    "ki-leaf3",
    "ki-leaf4",
    "noki-root",
    "noki-int1",
    "noki-int2",
    "noki-leaf2",
    "noki-leaf3",
    "noki-leaf4",
    "cycle-a",
    "cycle-b",
    "ec256.self",
    "rsa4096.self",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_permutation_of_a_chain_gives_the_same_order(
        (chain, shuffled) in proptest::sample::select(CHAINS).prop_flat_map(|chain| {
            (Just(chain), Just(certs(chain)).prop_shuffle())
        })
    ) {
        prop_assert_eq!(ordered(&shuffled), (certs(chain), None));
    }

    #[test]
    fn the_set_of_certificates_is_always_kept(
        input in proptest::sample::subsequence(ALL, 0..=ALL.len())
            .prop_flat_map(|names| Just(certs(&names)).prop_shuffle())
    ) {
        let Ordered { order, problem } = order(&input);

        let mut sorted = order.clone();
        sorted.sort_unstable();
        prop_assert_eq!(sorted, (0..input.len()).collect::<Vec<_>>());
        if problem.is_some() {
            prop_assert_eq!(order, (0..input.len()).collect::<Vec<_>>());
        }
    }
}
