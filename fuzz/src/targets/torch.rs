//! PyTorch `.pt` checkpoints (`noether eval --checkpoint X.pt`, `finetune --from X.pt`,
//! `convert-checkpoint`): the zip archive, the pickle through the restricted unpickler,
//! the storages and views; read and written back as safetensors.

use std::collections::HashMap;
use std::io::{Cursor, Read, Write};
use std::path::Path;

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::{input_file, outcome, seed_files};
use crate::mutate::havoc;
use crate::{Outcome, Target};

/// The `.pt` reader of noether-transfer.
pub struct TorchTarget;

impl Target for TorchTarget {
    fn name(&self) -> &'static str {
        "pt"
    }

    fn seeds(&self) -> std::io::Result<Vec<Vec<u8>>> {
        seed_files("fuzz/corpus/pt", "pt")
    }

    fn mutate(&self, input: &[u8], corpus: &[Vec<u8>], rng: &mut ChaCha8Rng) -> Vec<u8> {
        match records(input) {
            Some(mut records) if rng.random_range(0..10) < 8 => {
                // Mostly the pickle; sometimes a storage record (truncated, extended).
                let pickle = records
                    .iter()
                    .position(|(name, _)| name.ends_with("data.pkl"));
                let k = match pickle {
                    Some(p) if rng.random_range(0..4) > 0 => p,
                    _ => rng.random_range(0..records.len()),
                };
                let blobs: Vec<Vec<u8>> = records.iter().map(|(_, b)| b.clone()).collect();
                records[k].1 = havoc(&records[k].1, &blobs, rng);
                archive(&records).unwrap_or_else(|| input.to_vec())
            }
            _ => havoc(input, corpus, rng),
        }
    }

    fn execute(&self, input: &[u8], scratch: &Path) -> Outcome {
        let path = input_file(scratch, "input.pt", input);
        outcome(read_and_convert(&path, scratch))
    }
}

/// The checkpoint read and written back as safetensors (the `convert-checkpoint` path).
fn read_and_convert(path: &Path, scratch: &Path) -> noether_transfer::Result<()> {
    let checkpoint = noether_transfer::read_torch(path)?;
    checkpoint.to_safetensors(HashMap::new(), &scratch.join("out.safetensors"))?;
    Ok(())
}

/// The records of a zip archive, in order (`None` if it does not read).
fn records(input: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut zip = zip::ZipArchive::new(Cursor::new(input)).ok()?;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).ok()?;
        let mut data = Vec::new();
        entry.read_to_end(&mut data).ok()?;
        out.push((entry.name().ok()?.into_owned(), data));
    }
    (!out.is_empty()).then_some(out)
}

/// A stored (uncompressed) zip archive of `records`, as torch.save writes one.
fn archive(records: &[(String, Vec<u8>)]) -> Option<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in records {
        writer.start_file(name.as_str(), options).ok()?;
        writer.write_all(data).ok()?;
    }
    Some(writer.finish().ok()?.into_inner())
}
