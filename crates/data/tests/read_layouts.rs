//! Every layout read against numbers computed independently with numpy:
//! `../shared/data/toptag-pythia/checksums.json` (skipped with a message when the shared
//! folder is absent) and `tests/fixtures/data_fixtures_expected.json`.

use std::path::{Path, PathBuf};

use noether_data::{Backend, JetFile, JetSet, Layout, OpenOptions};
use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shared_data() -> Option<PathBuf> {
    let dir = workspace().join("../shared/data/toptag-pythia");
    if dir.join("checksums.json").exists() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: ../shared/data/toptag-pythia is absent (shared fixtures only)");
        None
    }
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1.0)
}

fn sums(jets: &JetSet) -> [f64; 4] {
    let mut s = [0.0; 4];
    for c in jets.momenta() {
        for k in 0..4 {
            s[k] += f64::from(c[k]);
        }
    }
    s
}

fn check_against_numpy(name: &str, layout: Layout, backend: Backend) {
    let Some(dir) = shared_data() else { return };
    let expected = &json(&dir.join("checksums.json"))[name];
    let options = OpenOptions {
        backend,
        ..OpenOptions::default()
    };
    let file = JetFile::open_with(dir.join(name), &options).unwrap();
    assert_eq!(file.layout(), layout, "{name}");
    let (jets, report) = file.read_all().unwrap();
    let n = expected["jets"].as_u64().unwrap() as usize;
    assert_eq!(jets.len(), n, "{name}: {report}");
    assert!(report.skipped_empty.is_empty());
    assert_eq!(
        jets.signal_count() as u64,
        expected["signal"].as_u64().unwrap()
    );
    assert_eq!(
        jets.total_constituents() as u64,
        expected["constituents"].as_u64().unwrap()
    );
    let max = (0..n).map(|i| jets.multiplicity(i)).max().unwrap();
    assert_eq!(max as u64, expected["max_constituents"].as_u64().unwrap());
    assert_eq!(
        jets.multiplicity(n - 1) as u64,
        expected["last_jet_n"].as_u64().unwrap()
    );
    let s = sums(&jets);
    for (k, key) in ["sum_E", "sum_px", "sum_py", "sum_pz"].iter().enumerate() {
        let want = expected[key].as_f64().unwrap();
        assert!(close(s[k], want, 1e-9), "{name} {key}: {} vs {want}", s[k]);
    }
    let first: Vec<f64> = expected["first_jet_first_constituent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let got = jets.constituents(0)[0].map(f64::from);
    assert_eq!(got.to_vec(), first, "{name}: first constituent");
    let truth_e: f64 = (0..n).map(|i| f64::from(jets.truth(i).unwrap()[0])).sum();
    let want = expected["sum_truth_E"].as_f64().unwrap();
    assert!(
        close(truth_e, want, 1e-9),
        "{name} truth: {truth_e} vs {want}"
    );
    // The labels-only path agrees with the full read.
    assert_eq!(file.labels().unwrap(), jets.labels());
}

#[test]
fn lorentznet_layout_test_file_matches_numpy() {
    check_against_numpy("test.h5", Layout::LorentzNet, Backend::Pure);
}

#[test]
fn lorentznet_layout_train_file_matches_numpy() {
    check_against_numpy("train.h5", Layout::LorentzNet, Backend::Pure);
}

#[test]
fn toptag_pandas_table_matches_numpy() {
    check_against_numpy("sample_table.h5", Layout::TopTaggingTable, Backend::Pure);
}

#[test]
fn toptag_pandas_fixed_matches_numpy() {
    check_against_numpy("sample_fixed.h5", Layout::TopTaggingFixed, Backend::Pure);
}

#[test]
fn pandas_and_converted_layouts_agree_jet_by_jet() {
    let Some(dir) = shared_data() else { return };
    let (table, _) = JetFile::open(dir.join("sample_table.h5"))
        .unwrap()
        .read_all()
        .unwrap();
    let (test, _) = JetFile::open(dir.join("test.h5"))
        .unwrap()
        .read(0, 2000)
        .unwrap();
    assert_eq!(table, test);
}

#[test]
fn jets_are_pt_ordered() {
    let Some(dir) = shared_data() else { return };
    let (jets, _) = JetFile::open(dir.join("val.h5"))
        .unwrap()
        .read(0, 500)
        .unwrap();
    for i in 0..jets.len() {
        let pt: Vec<f32> = jets
            .constituents(i)
            .iter()
            .map(|c| c[1].hypot(c[2]))
            .collect();
        assert!(pt.windows(2).all(|w| w[0] >= w[1]), "jet {i}");
    }
}

#[test]
fn jetnet_fixture_matches_numpy() {
    let dir = workspace().join("tests/fixtures");
    let expected = &json(&dir.join("data_fixtures_expected.json"))["jetnet_t30.h5"];
    let options = OpenOptions {
        label: Some(1),
        ..OpenOptions::default()
    };
    let file = JetFile::open_with(dir.join("jetnet_t30.h5"), &options).unwrap();
    assert_eq!(file.layout(), Layout::JetNet);
    let (jets, report) = file.read_all().unwrap();
    assert_eq!(report.jets_read as u64, expected["rows"].as_u64().unwrap());
    assert_eq!(jets.len() as u64, expected["jets_kept"].as_u64().unwrap());
    assert_eq!(
        report.skipped_empty.len() as u64,
        expected["skipped_empty"].as_u64().unwrap()
    );
    assert_eq!(
        jets.total_constituents() as u64,
        expected["constituents"].as_u64().unwrap()
    );
    assert_eq!(jets.signal_count(), jets.len(), "label override applies");
    let e = sums(&jets)[0];
    let want = expected["sum_E"].as_f64().unwrap();
    assert!(close(e, want, 1e-6), "{e} vs {want}");
    let pt: f64 = jets
        .momenta()
        .iter()
        .map(|c| f64::from(c[1]).hypot(f64::from(c[2])))
        .sum();
    assert!(close(pt, expected["sum_pt"].as_f64().unwrap(), 1e-6));
}

#[test]
fn lhco_fixture_matches_numpy() {
    let dir = workspace().join("tests/fixtures");
    let expected = &json(&dir.join("data_fixtures_expected.json"))["lhco_rnd.h5"];
    let file = JetFile::open(dir.join("lhco_rnd.h5")).unwrap();
    assert_eq!(file.layout(), Layout::LhcOlympics);
    let (jets, _) = file.read_all().unwrap();
    assert_eq!(jets.len() as u64, expected["rows"].as_u64().unwrap());
    assert_eq!(
        jets.signal_count() as u64,
        expected["signal"].as_u64().unwrap()
    );
    assert_eq!(
        jets.total_constituents() as u64,
        expected["constituents"].as_u64().unwrap()
    );
    let s = sums(&jets);
    assert!(
        close(s[0], expected["sum_E"].as_f64().unwrap(), 1e-6),
        "{}",
        s[0]
    );
    assert!(
        close(s[3], expected["sum_pz"].as_f64().unwrap(), 1e-5),
        "{}",
        s[3]
    );
}

/// The same numpy checks through the system libhdf5 (cargo feature `libhdf5`).
#[cfg(feature = "libhdf5")]
mod libhdf5 {
    use super::*;

    #[test]
    fn lorentznet_layout_matches_numpy_via_libhdf5() {
        check_against_numpy("test.h5", Layout::LorentzNet, Backend::LibHdf5);
    }

    #[test]
    fn toptag_pandas_table_matches_numpy_via_libhdf5() {
        check_against_numpy("sample_table.h5", Layout::TopTaggingTable, Backend::LibHdf5);
    }

    #[test]
    fn toptag_pandas_fixed_matches_numpy_via_libhdf5() {
        check_against_numpy("sample_fixed.h5", Layout::TopTaggingFixed, Backend::LibHdf5);
    }

    #[test]
    fn bundled_ragged_file_reads_identically_via_libhdf5() {
        let path = workspace().join("data/val.h5");
        let pure = JetFile::open(&path).unwrap().read_all().unwrap().0;
        let options = OpenOptions {
            backend: Backend::LibHdf5,
            ..OpenOptions::default()
        };
        let lib = JetFile::open_with(&path, &options)
            .unwrap()
            .read_all()
            .unwrap()
            .0;
        assert_eq!(pure, lib);
    }
}
