//! `FixedType` against the C++ `ap_fixed` types: the values g++ computes with the
//! ap_types headers hls4ml ships (fixture `tests/fixtures/make_ap_fixed_fixtures.py`).

use noether_quant::FixedType;

#[derive(serde::Deserialize)]
struct Case {
    #[serde(rename = "type")]
    ty: String,
    values: Vec<f64>,
}

#[derive(serde::Deserialize)]
struct Fixture {
    inputs: Vec<f64>,
    types: Vec<Case>,
}

#[test]
fn conversions_equal_the_cpp_ap_fixed_headers_bit_for_bit() {
    let text = include_str!("fixtures/ap_fixed.json");
    let fixture: Fixture = serde_json::from_str(text).unwrap();
    assert!(fixture.types.len() > 100);
    let mut checked = 0;
    for case in &fixture.types {
        let ty: FixedType = case.ty.parse().unwrap();
        assert_eq!(ty.to_string(), case.ty);
        for (x, want) in fixture.inputs.iter().zip(&case.values) {
            let got = ty.quantize(*x);
            assert_eq!(
                got.to_bits(),
                (want + 0.0).to_bits(),
                "{} of {x}: {got} != {want}",
                case.ty
            );
            assert!(ty.holds(ty.quantize_raw(*x)));
            checked += 1;
        }
    }
    assert_eq!(checked, fixture.types.len() * fixture.inputs.len());
}
