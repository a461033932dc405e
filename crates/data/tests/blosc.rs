//! Blosc-compressed PyTables files (as the public Top Tagging release is written):
//! the pure backend refuses them naming the filter and the feature that reads them; the
//! `libhdf5` feature reads them. Fixture: `tests/fixtures/toptag_blosc_table.h5`, the first
//! 50 jets of the shared `sample_table.h5` written by pandas with complib='blosc:lz4'
//! (`tests/fixtures/make_blosc_fixture.py`, which printed 28 signal jets and
//! sum(E_0) = 7503.6455078125).

use std::path::{Path, PathBuf};

use noether_data::{Backend, DataError, JetFile, OpenOptions};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/toptag_blosc_table.h5")
}

#[test]
fn pure_backend_names_the_blosc_filter_and_the_feature() {
    let options = OpenOptions {
        backend: Backend::Pure,
        ..OpenOptions::default()
    };
    let err = JetFile::open_with(fixture(), &options)
        .and_then(|f| f.read_all())
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            &err,
            DataError::UnsupportedFilter {
                filter_id: 32001,
                filter_name: "Blosc",
                feature: "libhdf5",
                ..
            }
        ),
        "{text}"
    );
    assert!(
        text.contains("toptag_blosc_table.h5") && text.contains("table/table"),
        "{text}"
    );
}

#[cfg(feature = "libhdf5")]
#[test]
fn libhdf5_feature_reads_blosc_files_automatically() {
    let file = JetFile::open(fixture()).unwrap();
    let (jets, report) = file.read_all().unwrap();
    assert_eq!((jets.len(), report.skipped_empty.len()), (50, 0));
    assert_eq!(jets.signal_count(), 28);
    let e0: f64 = (0..50).map(|i| f64::from(jets.constituents(i)[0][0])).sum();
    assert!((e0 - 7503.6455078125).abs() < 1e-3, "{e0}");
    let shared = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/toptag-pythia/sample_table.h5");
    if shared.exists() {
        let (reference, _) = JetFile::open(shared).unwrap().read(0, 50).unwrap();
        assert_eq!(jets, reference);
    } else {
        eprintln!("SKIPPED comparison with the shared sample: ../shared is absent");
    }
}
