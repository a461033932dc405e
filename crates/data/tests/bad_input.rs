//! Bad input gets a typed error naming file, dataset and row — never a panic or silent
//! garbage. Broken files are written here with hdf5-pure's writer (or by truncating a
//! real file).

use std::path::{Path, PathBuf};

use hdf5_pure::FileBuilder;
use noether_data::{
    write_ragged, DataError, EmptyJetPolicy, JetFile, JetSetBuilder, ValidationPolicy,
};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("noether-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A LorentzNet-layout file with the given columns (3 jets of at most 2 constituents).
fn lorentznet_file(name: &str, nobj: &[i16], pmu: &[f32], labels: &[i8]) -> PathBuf {
    let path = tmp(name);
    let mut b = FileBuilder::new();
    b.create_dataset("Nobj").with_i16_data(nobj);
    b.create_dataset("Pmu")
        .with_f32_data(pmu)
        .with_shape(&[nobj.len() as u64, 2, 4]);
    b.create_dataset("is_signal").with_i8_data(labels);
    b.write(&path).unwrap();
    path
}

const GOOD: [f32; 24] = [
    10.0, 6.0, 8.0, 0.0, 5.0, 3.0, 4.0, 0.0, // jet 0
    7.0, 0.0, 0.0, 7.0, 0.0, 0.0, 0.0, 0.0, // jet 1
    2.0, 0.0, 2.0, 0.0, 1.0, 1.0, 0.0, 0.0, // jet 2
];

fn open_and_read(path: &Path) -> Result<usize, DataError> {
    let (jets, _) = JetFile::open(path)?.read_all()?;
    Ok(jets.len())
}

#[test]
fn valid_file_reads() {
    let p = lorentznet_file("good.h5", &[2, 1, 2], &GOOD, &[1, 0, 1]);
    assert_eq!(open_and_read(&p).unwrap(), 3);
}

#[test]
fn non_hdf5_file_is_named() {
    let p = tmp("text.h5");
    std::fs::write(&p, "E,px,py,pz\n1,2,3,4\n").unwrap();
    let err = open_and_read(&p).unwrap_err();
    assert!(matches!(err, DataError::NotHdf5 { .. }), "{err}");
    assert!(err.to_string().contains("text.h5"), "{err}");
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = open_and_read(Path::new("/nonexistent/jets.h5")).unwrap_err();
    assert!(
        matches!(err, DataError::Io { .. }) && err.to_string().contains("/nonexistent/jets.h5")
    );
}

#[test]
fn truncated_file_is_rejected_not_panicking() {
    let good = lorentznet_file("to-truncate.h5", &[2, 1, 2], &GOOD, &[1, 0, 1]);
    let bytes = std::fs::read(&good).unwrap();
    for keep in [100, bytes.len() / 2, bytes.len() - 40] {
        let p = tmp(&format!("truncated-{keep}.h5"));
        std::fs::write(&p, &bytes[..keep]).unwrap();
        assert!(
            open_and_read(&p).is_err(),
            "truncated to {keep} bytes was accepted"
        );
    }
}

#[test]
fn nan_momentum_names_dataset_and_row() {
    let mut pmu = GOOD;
    pmu[9] = f32::NAN; // jet 1, constituent 0, px
    let p = lorentznet_file("nan.h5", &[2, 1, 2], &pmu, &[1, 0, 1]);
    let err = open_and_read(&p).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, DataError::InvalidJet { row: 1, .. }),
        "{text}"
    );
    assert!(
        text.contains("nan.h5") && text.contains("'Pmu'") && text.contains("non-finite"),
        "{text}"
    );
}

#[test]
fn energy_below_momentum_is_rejected() {
    let mut pmu = GOOD;
    pmu[16] = 1.0; // jet 2, constituent 0: E = 1 < |p| = 2
    let p = lorentznet_file("spacelike.h5", &[2, 1, 2], &pmu, &[1, 0, 1]);
    let text = open_and_read(&p).unwrap_err().to_string();
    assert!(
        text.contains("jet 2") && text.contains("below |p|"),
        "{text}"
    );
}

#[test]
fn labels_outside_zero_one_are_rejected() {
    let p = lorentznet_file("label.h5", &[2, 1, 2], &GOOD, &[1, 2, 1]);
    let text = open_and_read(&p).unwrap_err().to_string();
    assert!(
        text.contains("'is_signal'") && text.contains("jet 1") && text.contains("label 2"),
        "{text}"
    );
    assert!(JetFile::open(&p).unwrap().labels().is_err());
}

#[test]
fn empty_jets_are_skipped_and_counted_or_rejected_by_policy() {
    let p = lorentznet_file("empty.h5", &[2, 0, 2], &GOOD, &[1, 0, 1]);
    let (jets, report) = JetFile::open(&p).unwrap().read_all().unwrap();
    assert_eq!((jets.len(), report.skipped_empty.as_slice()), (2, &[1][..]));
    // Per-jet outputs name jets by file row: the second kept jet is row 2.
    assert_eq!(report.kept_rows(), vec![0, 2]);
    assert!(
        report.to_string().contains("skipped 1 empty (rows 1)"),
        "{report}"
    );
    let strict = ValidationPolicy {
        empty_jets: EmptyJetPolicy::Error,
        ..ValidationPolicy::default()
    };
    let err = JetFile::open(&p)
        .unwrap()
        .with_policy(strict)
        .read_all()
        .unwrap_err();
    assert!(err.to_string().contains("no constituents"), "{err}");
}

#[test]
fn nobj_beyond_the_padding_is_rejected() {
    let p = lorentznet_file("nobj.h5", &[2, 3, 2], &GOOD, &[1, 0, 1]);
    let text = open_and_read(&p).unwrap_err().to_string();
    assert!(text.contains("'Nobj'") && text.contains("jet 1"), "{text}");
}

#[test]
fn missing_dataset_is_named() {
    let path = tmp("missing.h5");
    let mut b = FileBuilder::new();
    b.create_dataset("Pmu")
        .with_f32_data(&GOOD)
        .with_shape(&[3, 2, 4]);
    b.create_dataset("Nobj").with_i16_data(&[2, 1, 2]);
    b.write(&path).unwrap();
    let err = open_and_read(&path).unwrap_err();
    assert!(
        matches!(&err, DataError::MissingDataset { dataset, .. } if dataset == "is_signal"),
        "{err}"
    );
}

#[test]
fn wrong_rank_and_dtype_are_named() {
    let path = tmp("rank.h5");
    let mut b = FileBuilder::new();
    b.create_dataset("Pmu")
        .with_f32_data(&GOOD)
        .with_shape(&[3, 8]);
    b.create_dataset("Nobj").with_i16_data(&[2, 1, 2]);
    b.create_dataset("is_signal").with_i8_data(&[1, 0, 1]);
    b.write(&path).unwrap();
    let err = open_and_read(&path).unwrap_err();
    assert!(
        matches!(&err, DataError::BadShape { dataset, .. } if dataset == "Pmu"),
        "{err}"
    );

    let path = tmp("dtype.h5");
    let mut b = FileBuilder::new();
    let ints: Vec<i32> = GOOD.iter().map(|&x| x as i32).collect();
    b.create_dataset("Pmu")
        .with_i32_data(&ints)
        .with_shape(&[3, 2, 4]);
    b.create_dataset("Nobj").with_i16_data(&[2, 1, 2]);
    b.create_dataset("is_signal").with_i8_data(&[1, 0, 1]);
    b.write(&path).unwrap();
    let err = open_and_read(&path).unwrap_err();
    assert!(
        matches!(&err, DataError::BadDtype { dataset, .. } if dataset == "Pmu"),
        "{err}"
    );

    let path = tmp("rows.h5");
    let mut b = FileBuilder::new();
    b.create_dataset("Pmu")
        .with_f32_data(&GOOD)
        .with_shape(&[3, 2, 4]);
    b.create_dataset("Nobj").with_i16_data(&[2, 1]);
    b.create_dataset("is_signal").with_i8_data(&[1, 0, 1]);
    b.write(&path).unwrap();
    let err = open_and_read(&path).unwrap_err();
    assert!(
        matches!(&err, DataError::BadShape { dataset, .. } if dataset == "Nobj"),
        "{err}"
    );
}

#[test]
fn unknown_layout_lists_what_is_there() {
    let path = tmp("unknown.h5");
    let mut b = FileBuilder::new();
    b.create_dataset("images").with_f32_data(&[0.0; 4]);
    b.write(&path).unwrap();
    let text = open_and_read(&path).unwrap_err().to_string();
    assert!(
        text.contains("no known jet layout") && text.contains("images"),
        "{text}"
    );
}

#[test]
fn ragged_offsets_not_monotone_are_rejected() {
    let path = tmp("offsets.h5");
    let mut b = FileBuilder::new();
    b.create_dataset("constituents")
        .with_f32_data(&GOOD[..16])
        .with_shape(&[4, 4]);
    b.create_dataset("offsets").with_i64_data(&[0, 3, 1, 4]);
    b.create_dataset("labels").with_i8_data(&[0, 1, 0]);
    b.write(&path).unwrap();
    let err = open_and_read(&path).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, DataError::InvalidJet { row: 1, .. }),
        "{text}"
    );
    assert!(
        text.contains("'offsets'") && text.contains("not monotone"),
        "{text}"
    );
}

#[test]
fn ragged_round_trip_and_atomic_overwrite() {
    let mut builder = JetSetBuilder::default();
    builder.push(&[[5.0, 3.0, 4.0, 0.0]], 1, Some([173.0, 0.0, 0.0, 10.0]));
    builder.push(
        &[[9.0, 0.0, 0.0, 9.0], [20.0, 0.0, 12.0, 16.0]],
        0,
        Some([0.0; 4]),
    );
    let jets = builder.finish();
    let path = tmp("roundtrip.h5");
    std::fs::write(&path, b"old content").unwrap();
    write_ragged(&path, &jets, "test").unwrap();
    let (read, _) = JetFile::open(&path).unwrap().read_all().unwrap();
    assert_eq!(read, jets);
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("roundtrip.tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary file left behind");
    let err = write_ragged(Path::new("/nonexistent-dir/out.h5"), &jets, "test").unwrap_err();
    assert!(
        matches!(err, DataError::Write { .. })
            && err.to_string().contains("/nonexistent-dir/out.h5")
    );
}
