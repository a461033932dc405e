//! `noether convert-checkpoint IN.pt OUT.safetensors`.

use std::collections::HashMap;
use std::path::Path;

use noether::train::write_atomically;
use noether::transfer::read_torch;

use super::output::say;

/// Reads the PyTorch checkpoint `input` and writes its tensors to `output` as
/// safetensors (same keys and dtypes), saying what was converted and what was skipped.
///
/// # Errors
/// The reader's errors (naming `input`), a write error naming `output`.
pub fn convert(input: &Path, output: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let checkpoint = read_torch(input)?;
    let metadata = HashMap::from([(
        "source".to_owned(),
        format!(
            "converted by noether {} from {}",
            noether::VERSION,
            input.display()
        ),
    )]);
    let bytes = checkpoint.to_safetensors(metadata, output)?;
    write_atomically(output, &bytes)?;
    let elements: usize = checkpoint.tensors.iter().map(|(_, t)| t.elem_count()).sum();
    say!(
        "wrote {} tensors ({elements} values) to {}",
        checkpoint.tensors.len(),
        output.display()
    )?;
    for name in &checkpoint.skipped {
        say!("  skipped {name} (not a tensor)")?;
    }
    Ok(())
}
