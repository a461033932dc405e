//! # noether-transfer
//!
//! Transfer learning from checkpoints trained elsewhere. This release loads any
//! safetensors checkpoint into a noether model built from a `VarMap`
//! ([`load_checkpoint`]): keys remapped by regex rules ([`Remap`], `module.` prefixes
//! recognised), F16 / BF16 / F64 converted, shapes checked, and a [`LoadReport`] of
//! applied, converted, missing, unexpected and shape-mismatched keys (`strict` turns
//! missing keys into an error). [`LoraLinear`] implements LoRA with PEFT's maths, merge /
//! unmerge and PEFT's adapter file layout; wiring adapters into the models, LP-FT,
//! distillation and pruning are not built yet.
//!
//! ```
//! use noether_transfer::{remap_key, Remap};
//!
//! let rules = [Remap::strip_prefix("module."), Remap::parse(r"^LGEBs\.(\d+)=blocks.$1")?];
//! assert_eq!(remap_key(&rules, "module.LGEBs.3.phi_e.0.weight"), "blocks.3.phi_e.0.weight");
//! # Ok::<(), noether_transfer::TransferError>(())
//! ```

mod error;
mod load;
mod lora;
mod remap;

pub use error::{Result, TransferError};
pub use load::{load_checkpoint, LoadOptions, LoadReport, Mismatch};
pub use lora::{
    adapters_in, load_adapters, peft_key, save_adapter_tensors, save_adapters, Adapters,
    LoraConfig, LoraLinear,
};
pub use remap::{remap_key, Remap};
