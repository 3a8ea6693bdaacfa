//! The caching allocator for activations: size-bucketed free lists per device.
//!
//! Every op output asks for a buffer of its byte size; the request is rounded up to a bucket
//! ([`bucket_bytes`]: powers of two from 512 B up to 1 MiB, then multiples of 2 MiB) and served
//! from that bucket's free list when a buffer is there, else by `cuMemAllocAsync` on the device's
//! stream. When a [`super::CudaStorage`] is dropped its buffer goes back on the free list, not
//! to the driver, so the activations of one denoising step are reused by the next without any
//! driver call.
//!
//! Reuse needs no synchronisation: every op runs on the device's one stream, so work enqueued
//! on a reused buffer is ordered after the work of its previous owner.
//!
//! On `CUDA_ERROR_OUT_OF_MEMORY` the allocator frees its whole cache and retries once; a second
//! failure is [`crate::Error::OutOfMemory`]. Weights do not go through the buckets (see
//! [`Allocator::alloc_exact`]): they live as long as the model, and rounding each of SDXL's
//! 2,500 tensors up to 2 MiB would waste gigabytes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use cudarc::driver::sys::CUresult;
use cudarc::driver::{CudaSlice, CudaStream, DriverError};

/// Requests up to this size are rounded to a power of two.
const SMALL_LIMIT: usize = 1 << 20;
/// Larger requests are rounded up to a multiple of this.
const LARGE_GRANULE: usize = 2 << 20;
/// The smallest bucket (also what a zero-byte request gets, so no pointer is ever null).
const MIN_BUCKET: usize = 512;

/// The bucket a request of `bytes` is served from: the next power of two (at least 512 B) up
/// to 1 MiB, the next multiple of 2 MiB above.
pub fn bucket_bytes(bytes: usize) -> usize {
    if bytes <= SMALL_LIMIT {
        bytes.next_power_of_two().max(MIN_BUCKET)
    } else {
        bytes.div_ceil(LARGE_GRANULE) * LARGE_GRANULE
    }
}

/// The allocator's counters, in bytes of buckets (not of requests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Held by live tensors (activations and weights).
    pub in_use: usize,
    /// Held in the free lists, ready for reuse.
    pub cached: usize,
    /// The largest `in_use` seen since the device was opened (or [`Allocator::reset_peak`]).
    pub peak_in_use: usize,
    /// Allocations served from the cache.
    pub reuses: u64,
    /// Allocations that went to the driver.
    pub driver_allocs: u64,
}

#[derive(Default)]
struct State {
    free: BTreeMap<usize, Vec<CudaSlice<u8>>>,
    stats: MemoryStats,
}

/// Why an allocation failed.
pub enum AllocError {
    /// Out of memory even after the cache was freed.
    OutOfMemory,
    /// Another driver error.
    Driver(DriverError),
}

/// One device's caching allocator. Buffers are raw bytes; [`super::CudaStorage`] views them as
/// the tensor's element type.
pub struct Allocator {
    stream: Arc<CudaStream>,
    state: Mutex<State>,
}

impl Allocator {
    /// An empty allocator for buffers on `stream`.
    pub fn new(stream: Arc<CudaStream>) -> Self {
        Allocator { stream, state: Mutex::new(State::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent lists (each update is one push or pop).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A buffer of at least `bytes` bytes from the bucket of that size, reused when one is
    /// free. Returns the buffer; its length is the bucket size.
    pub fn alloc_bucketed(&self, bytes: usize) -> Result<CudaSlice<u8>, AllocError> {
        let size = bucket_bytes(bytes);
        {
            let mut st = self.lock();
            if let Some(buf) = st.free.get_mut(&size).and_then(Vec::pop) {
                st.stats.cached -= size;
                st.stats.reuses += 1;
                add_in_use(&mut st.stats, size);
                return Ok(buf);
            }
        }
        self.alloc_from_driver(size)
    }

    /// A buffer of exactly `bytes` bytes (at least 1) from the driver, for weights; freed to the
    /// driver, not cached, when dropped.
    pub fn alloc_exact(&self, bytes: usize) -> Result<CudaSlice<u8>, AllocError> {
        self.alloc_from_driver(bytes.max(1))
    }

    fn alloc_from_driver(&self, size: usize) -> Result<CudaSlice<u8>, AllocError> {
        // SAFETY: the contents are uninitialised; every op writes its whole output (and the
        // tests poison fresh buffers to check that it does).
        let first = unsafe { self.stream.alloc::<u8>(size) };
        let buf = match first {
            Ok(buf) => buf,
            Err(e) if e.0 == CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                self.free_cache();
                match unsafe { self.stream.alloc::<u8>(size) } {
                    Ok(buf) => buf,
                    Err(e) if e.0 == CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                        return Err(AllocError::OutOfMemory);
                    }
                    Err(e) => return Err(AllocError::Driver(e)),
                }
            }
            Err(e) => return Err(AllocError::Driver(e)),
        };
        let mut st = self.lock();
        st.stats.driver_allocs += 1;
        add_in_use(&mut st.stats, size);
        Ok(buf)
    }

    /// Takes back a bucketed buffer (from a dropped storage) onto its free list.
    pub fn release_bucketed(&self, buf: CudaSlice<u8>) {
        let size = buf.len();
        let mut st = self.lock();
        st.stats.in_use -= size;
        st.stats.cached += size;
        st.free.entry(size).or_default().push(buf);
    }

    /// Frees an exact-size buffer to the driver (stream-ordered).
    pub fn release_exact(&self, buf: CudaSlice<u8>) {
        let size = buf.len();
        self.lock().stats.in_use -= size;
        drop(buf);
    }

    /// Returns every cached buffer to the driver (stream-ordered frees; nothing waits).
    pub fn free_cache(&self) {
        let free = {
            let mut st = self.lock();
            st.stats.cached = 0;
            std::mem::take(&mut st.free)
        };
        drop(free);
    }

    /// The current counters.
    pub fn stats(&self) -> MemoryStats {
        self.lock().stats
    }

    /// Restarts the peak counter from the current use (benches call it between runs).
    pub fn reset_peak(&self) {
        let mut st = self.lock();
        st.stats.peak_in_use = st.stats.in_use;
    }
}

fn add_in_use(stats: &mut MemoryStats, size: usize) {
    stats.in_use += size;
    stats.peak_in_use = stats.peak_in_use.max(stats.in_use);
}

#[cfg(test)]
mod tests {
    use super::bucket_bytes;

    #[test]
    fn buckets_are_powers_of_two_then_2mib_multiples() {
        assert_eq!(bucket_bytes(0), 512);
        assert_eq!(bucket_bytes(1), 512);
        assert_eq!(bucket_bytes(513), 1024);
        assert_eq!(bucket_bytes(1000), 1024);
        assert_eq!(bucket_bytes(1 << 20), 1 << 20);
        assert_eq!(bucket_bytes((1 << 20) + 1), 2 << 20);
        assert_eq!(bucket_bytes((2 << 20) + 1), 4 << 20);
        assert_eq!(bucket_bytes(5 << 20), 6 << 20);
        // An SDXL activation 2x128x128x320 bf16 = 20 MiB exactly.
        assert_eq!(bucket_bytes(2 * 128 * 128 * 320 * 2), 20 << 20);
    }
}
