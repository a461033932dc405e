//! `TaggerModel::forward_flops` against PyTorch's FlopCounterMode on the reference
//! implementations (the authors' LorentzNet structure, weaver-core's ParticleNet,
//! energyflow-style PFN / EFN, an MLP), one jet each, exactly: the counts written by
//! `tests/fixtures/make_flop_fixtures.py` with torch 2.15.

use noether_equivariant::{
    FlowNetwork, LorentzNet, LorentzNetConfig, Mlp, ParticleNet, Pelican, PelicanConfig,
    TaggerModel,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/forward_flops.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every case of `key`: our count equals torch's.
fn check<M: TaggerModel>(key: &str)
where
    M::Config: DeserializeOwned,
{
    let cases = fixture()[key].as_array().unwrap().clone();
    assert!(!cases.is_empty());
    for case in cases {
        let config: M::Config = serde_json::from_value(case["config"].clone()).unwrap();
        let nodes = usize::try_from(case["nodes"].as_u64().unwrap()).unwrap();
        let torch = u128::from(case["flops"].as_u64().unwrap());
        assert_eq!(
            M::forward_flops(&config, nodes),
            torch,
            "{key} {}",
            case["config"]
        );
    }
}

#[test]
fn lorentznet_counts_the_authors_pair_mlps() {
    check::<LorentzNet>("lorentznet");
    // The official size at 50 constituents: 0.65 GFLOP (the tagging guide quotes 0.70,
    // counting self-pairs and a coordinate update in the last block as well).
    let official = LorentzNetConfig::default();
    assert_eq!(LorentzNet::forward_flops(&official, 52), 651_009_888);
}

#[test]
fn particlenet_counts_weavers_edge_convolutions_and_knn() {
    check::<ParticleNet>("particlenet");
}

#[test]
fn flow_networks_and_the_mlp_count_their_dense_layers() {
    check::<FlowNetwork>("flow");
    check::<Mlp>("mlp");
}

#[test]
fn pelican_grows_with_the_square_of_the_nodes() {
    // No PyTorch PELICAN here: its count is checked for the structure it must have, the
    // pair terms (n^2) dominating, doubling the nodes multiplying it by nearly 4.
    let c = PelicanConfig::default();
    let (small, large) = (
        Pelican::forward_flops(&c, 32),
        Pelican::forward_flops(&c, 64),
    );
    let ratio = large as f64 / small as f64;
    assert!((3.99..=4.0).contains(&ratio), "{ratio}");
}
