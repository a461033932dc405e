//! # noether-transfer
//!
//! Transfer learning from checkpoints trained elsewhere. This release loads any
//! safetensors checkpoint or PyTorch `.pt` state dict (the zip `torch.save` format, read
//! without Python by [`read_torch`] through a restricted unpickler with
//! `torch.load(weights_only=True)` semantics) into a noether model built from a `VarMap`
//! ([`load_checkpoint`]): keys remapped by regex rules ([`Remap`], `module.` prefixes
//! recognised, and weaver's `mod.`), F16 / BF16 / F64 converted, shapes checked, and a [`LoadReport`] of
//! applied, converted, missing, unexpected, shape-mismatched and (optional) new keys
//! (`strict` turns missing keys into an error). LoRA follows PEFT's maths and file
//! layout: the adapted layer is the models' own `noether_equivariant::Linear` with a
//! [`LoraConfig::low_rank`] update attached, [`save_adapter_tensors`] /
//! [`load_adapters`] read and write `adapter_model.safetensors` + `adapter_config.json`,
//! and [`adapters_in`] extracts the adapters of a noether checkpoint. Adapters on the
//! models' own layers, frozen parameters, layer-wise learning-rate decay, LP-FT,
//! distillation and pruning are run by `noether-train` (`[lora]`, `optim.freeze`,
//! `optim.layer_decay`, `optim.linear_probe_epochs`, `[distill]`, `[prune]`) and
//! `noether finetune`.
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
mod torch;

pub use error::{Result, TransferError};
pub use load::{apply_tensors, load_checkpoint, LoadOptions, LoadReport, Mismatch};
pub use lora::{
    adapters_in, load_adapters, peft_key, save_adapter_tensors, save_adapters, Adapters, LoraConfig,
};
pub use remap::{remap_key, Remap};
pub use torch::{read_torch, read_torch_bytes, TorchCheckpoint};
