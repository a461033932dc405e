//! Helpers shared by the loader tests.

use candle_core::{DType, Device};
use candle_nn::VarMap;
use noether_equivariant::{seeded_varbuilder, FlowConfig, FlowNetwork};

/// The PFN the fixtures were written for (Phi = (4, 3), F = (5,)), its variables seeded.
pub fn pfn() -> VarMap {
    let varmap = VarMap::new();
    let config = FlowConfig {
        phi_sizes: vec![4, 3],
        f_sizes: vec![5],
        ..FlowConfig::default()
    };
    FlowNetwork::new(
        &config,
        &seeded_varbuilder(&varmap, 0, DType::F32, &Device::Cpu),
    )
    .unwrap();
    varmap
}
