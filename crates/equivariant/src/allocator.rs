//! The allocator every noether binary installs.
//!
//! candle allocates a fresh buffer for every tensor operation: a LorentzNet training step
//! allocates and frees gigabytes of multi-megabyte edge tensors. glibc serves those with
//! `mmap` and unmaps them on free; mimalloc by default also returns ("purges") freed
//! memory to the kernel after 10 ms. Either way the next allocation page-faults, and the
//! kernel zeroes every page again: `perf` put 52% of a LorentzNet training step in
//! `clear_page_erms` under mimalloc's defaults. [`CachingAllocator`] is mimalloc with
//! purging turned off, so freed pages are reused as they are (official LorentzNet, batch
//! of 32, 1 thread: 6.4 -> 10.7 training jets/s). The cost: the process keeps its peak
//! heap until it exits, which is what a training process wants.
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOCATOR: noether_equivariant::CachingAllocator = noether_equivariant::CachingAllocator;
//! ```

// A GlobalAlloc is an unsafe trait and mimalloc's options are a C API: the workspace's
// one exception to `unsafe_code = "deny"`, kept to this file of forwarding calls.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, Ordering};

use mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the same position in its v2 and v3 option enums;
/// the Rust bindings do not name it). -1: never purge.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

static CONFIGURED: AtomicBool = AtomicBool::new(false);

/// mimalloc that never returns freed memory to the kernel (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct CachingAllocator;

impl CachingAllocator {
    /// Turns purging off once, before the first allocation is served. `mi_option_set`
    /// does not allocate; two threads racing here both store the same value.
    #[inline]
    fn configure() {
        if !CONFIGURED.load(Ordering::Relaxed) {
            CONFIGURED.store(true, Ordering::Relaxed);
            // SAFETY: sets a plain integer option; the option index is in range of both
            // mimalloc versions' enums.
            unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
        }
    }
}

// SAFETY: every call forwards to MiMalloc, a correct GlobalAlloc, with the same arguments.
unsafe impl GlobalAlloc for CachingAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::configure();
        // SAFETY: forwarded contract.
        unsafe { MiMalloc.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::configure();
        // SAFETY: forwarded contract.
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_round_trip_and_turn_purging_off() {
        let layout = Layout::from_size_align(1 << 20, 64).expect("layout");
        // SAFETY: a valid non-zero layout; the block is freed with the same layout.
        unsafe {
            let p = CachingAllocator.alloc_zeroed(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % 64, 0);
            assert!(std::slice::from_raw_parts(p, 1 << 20)
                .iter()
                .all(|&b| b == 0));
            CachingAllocator.dealloc(p, layout);
        }
        // SAFETY: reads a plain integer option.
        let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, -1);
    }
}
