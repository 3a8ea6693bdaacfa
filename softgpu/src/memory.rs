//! Device memory: allocations at never-reused addresses (so a stale pointer is always caught),
//! each with a shadow bitmap of the bytes ever written, and the address windows of the
//! generic address space.
//!
//! Global allocations live at [`GLOBAL_BASE`] and up, 256-byte aligned like `cuMemAlloc`'s.
//! A CTA's shared memory appears in generic addresses at [`SHARED_WINDOW`] and a thread's local
//! memory at [`LOCAL_WINDOW`] (`cvta` adds or removes these bases).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::fault::{Fault, FaultKind};

/// The first global device address.
pub const GLOBAL_BASE: u64 = 0x7f00_0000_0000;
/// Generic addresses `SHARED_WINDOW + offset` are the CTA's shared memory.
pub const SHARED_WINDOW: u64 = 0x5000_0000_0000;
/// Generic addresses `LOCAL_WINDOW + offset` are the thread's local memory.
pub const LOCAL_WINDOW: u64 = 0x6000_0000_0000;
/// The size of each of the shared and local windows.
pub const WINDOW_SIZE: u64 = 1 << 32;
/// Alignment of every allocation, as the driver's.
pub const ALLOC_ALIGN: u64 = 256;

/// Copies `len` bytes, with the sizes of PTX accesses (1 to 16 bytes) as fixed-size moves
/// rather than a call to `memcpy`: this is the interpreter's hottest copy.
///
/// # Safety
/// As `std::ptr::copy_nonoverlapping`.
#[inline(always)]
pub unsafe fn copy_small(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's contract; unaligned reads and writes of the exact length.
    unsafe {
        match len {
            1 => *dst = *src,
            2 => (dst as *mut [u8; 2]).write_unaligned((src as *const [u8; 2]).read_unaligned()),
            4 => (dst as *mut [u8; 4]).write_unaligned((src as *const [u8; 4]).read_unaligned()),
            8 => (dst as *mut [u8; 8]).write_unaligned((src as *const [u8; 8]).read_unaligned()),
            16 => (dst as *mut [u8; 16]).write_unaligned((src as *const [u8; 16]).read_unaligned()),
            _ => std::ptr::copy_nonoverlapping(src, dst, len),
        }
    }
}

/// One device allocation: its bytes and which of them were ever written.
pub struct Allocation {
    pub base: u64,
    pub size: u64,
    /// The bytes, as words so that 8-byte atomics are aligned.
    words: Box<[AtomicU64]>,
    /// One bit per byte: written at least once.
    written: Box<[AtomicU8]>,
}

impl std::fmt::Debug for Allocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "allocation {:#x}..{:#x} ({} bytes)", self.base, self.base + self.size, self.size)
    }
}

fn zeroed<T: Default>(n: usize) -> Box<[T]> {
    (0..n).map(|_| T::default()).collect()
}

impl Allocation {
    fn new(base: u64, size: u64) -> Self {
        let words = zeroed::<AtomicU64>(size.div_ceil(8) as usize);
        let written = zeroed::<AtomicU8>(size.div_ceil(8) as usize);
        Allocation { base, size, words, written }
    }

    /// The first byte's address in host memory.
    pub fn host_ptr(&self) -> *mut u8 {
        self.words.as_ptr() as *mut u8
    }

    /// Whether `base + offset .. + len` lies inside.
    pub fn contains(&self, offset: u64, len: u64) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.size)
    }

    /// Copies `out.len()` bytes from `offset` (bounds checked by the caller).
    #[inline]
    pub fn read(&self, offset: u64, out: &mut [u8]) {
        debug_assert!(self.contains(offset, out.len() as u64));
        // SAFETY: in bounds; concurrent writers are other CTAs of a racy kernel, whose bytes
        // are then unspecified as on a GPU.
        unsafe { copy_small(self.host_ptr().add(offset as usize), out.as_mut_ptr(), out.len()) }
    }

    /// Copies `data` to `offset` and marks it written (bounds checked by the caller).
    #[inline]
    pub fn write(&self, offset: u64, data: &[u8]) {
        debug_assert!(self.contains(offset, data.len() as u64));
        // SAFETY: as in `read`.
        unsafe { copy_small(data.as_ptr(), self.host_ptr().add(offset as usize), data.len()) }
        self.mark_written(offset, data.len() as u64);
    }

    /// Fills `len` bytes at `offset` with `value` and marks them written.
    pub fn fill(&self, offset: u64, len: u64, value: u8) {
        debug_assert!(self.contains(offset, len));
        // SAFETY: as in `read`.
        unsafe { std::ptr::write_bytes(self.host_ptr().add(offset as usize), value, len as usize) }
        self.mark_written(offset, len);
    }

    /// Records `len` bytes from `offset` as written.
    #[inline]
    pub fn mark_written(&self, offset: u64, len: u64) {
        // The common case, an access inside one 8-byte group: one test, and an atomic only
        // the first time the bytes are written.
        if offset % 8 + len <= 8 {
            let bits = (((1u16 << len) - 1) as u8) << (offset % 8);
            let cell = &self.written[(offset / 8) as usize];
            if cell.load(Ordering::Relaxed) & bits != bits {
                cell.fetch_or(bits, Ordering::Relaxed);
            }
            return;
        }
        let (mut i, end) = (offset, offset + len);
        while i < end {
            let byte = (i / 8) as usize;
            if i % 8 == 0 && end - i >= 8 {
                self.written[byte].store(0xff, Ordering::Relaxed);
                i += 8;
            } else {
                self.written[byte].fetch_or(1 << (i % 8), Ordering::Relaxed);
                i += 1;
            }
        }
    }

    /// The first byte of `offset .. + len` never written, if any.
    #[inline]
    pub fn first_unwritten(&self, offset: u64, len: u64) -> Option<u64> {
        if offset % 8 + len <= 8 {
            let bits = (((1u16 << len) - 1) as u8) << (offset % 8);
            let have = self.written[(offset / 8) as usize].load(Ordering::Relaxed);
            return (have & bits != bits)
                .then(|| offset - offset % 8 + (!have & bits).trailing_zeros() as u64);
        }
        let (mut i, end) = (offset, offset + len);
        while i < end {
            let bits = self.written[(i / 8) as usize].load(Ordering::Relaxed);
            if i % 8 == 0 && end - i >= 8 {
                if bits != 0xff {
                    return Some(i + bits.trailing_ones() as u64);
                }
                i += 8;
            } else {
                if bits & (1 << (i % 8)) == 0 {
                    return Some(i);
                }
                i += 1;
            }
        }
        None
    }
}

/// Why an allocation or a host-side copy failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MemoryError {
    #[error("out of device memory: {requested} bytes requested, {free} of {total} free")]
    OutOfMemory { requested: u64, free: u64, total: u64 },
    #[error("{0:#x} is not the start of a live allocation")]
    NotAnAllocation(u64),
    #[error("{addr:#x}..+{len}: {why}")]
    BadRange { addr: u64, len: u64, why: String },
}

#[derive(Debug, Default)]
struct State {
    live: BTreeMap<u64, Arc<Allocation>>,
    /// Freed ranges, for naming a use after free.
    freed: Vec<(u64, u64)>,
    next: u64,
    used: u64,
}

/// All of one device's memory.
#[derive(Debug)]
pub struct DeviceMemory {
    total: u64,
    state: Mutex<State>,
}

impl DeviceMemory {
    /// A device with `total` bytes.
    pub fn new(total: u64) -> Self {
        DeviceMemory { total, state: Mutex::new(State { next: GLOBAL_BASE, ..State::default() }) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (free, total) bytes.
    pub fn info(&self) -> (u64, u64) {
        (self.total - self.state().used, self.total)
    }

    /// A fresh allocation of `size` bytes (at least 1), never written.
    pub fn alloc(&self, size: u64) -> Result<u64, MemoryError> {
        let mut s = self.state();
        let rounded = size.max(1).next_multiple_of(ALLOC_ALIGN);
        if s.used + rounded > self.total {
            return Err(MemoryError::OutOfMemory {
                requested: size,
                free: self.total - s.used,
                total: self.total,
            });
        }
        let base = s.next;
        // A gap after each allocation, so that running off its end is never another's bytes.
        s.next += rounded + ALLOC_ALIGN;
        s.used += rounded;
        s.live.insert(base, Arc::new(Allocation::new(base, size.max(1))));
        Ok(base)
    }

    /// Frees the allocation starting at `addr`.
    pub fn free(&self, addr: u64) -> Result<(), MemoryError> {
        let mut s = self.state();
        let a = s.live.remove(&addr).ok_or(MemoryError::NotAnAllocation(addr))?;
        s.used -= a.size.next_multiple_of(ALLOC_ALIGN);
        s.freed.push((a.base, a.size));
        Ok(())
    }

    /// The live allocation holding `addr`, if any.
    pub fn find(&self, addr: u64) -> Option<Arc<Allocation>> {
        let s = self.state();
        let (_, a) = s.live.range(..=addr).next_back()?;
        (addr < a.base + a.size).then(|| a.clone())
    }

    /// The allocation and offset of the range `addr .. + len`, or why it is not one.
    pub fn range(&self, addr: u64, len: u64) -> Result<(Arc<Allocation>, u64), MemoryError> {
        let bad = |why: String| MemoryError::BadRange { addr, len, why };
        let a = self.find(addr).ok_or_else(|| bad(self.describe_stray(addr)))?;
        let offset = addr - a.base;
        if !a.contains(offset, len) {
            return Err(bad(format!("runs past the end of {a:?}")));
        }
        Ok((a, offset))
    }

    /// Copies host bytes to device memory.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemoryError> {
        if data.is_empty() {
            return Ok(());
        }
        let (a, off) = self.range(addr, data.len() as u64)?;
        a.write(off, data);
        Ok(())
    }

    /// Copies device bytes to the host.
    pub fn read(&self, addr: u64, out: &mut [u8]) -> Result<(), MemoryError> {
        if out.is_empty() {
            return Ok(());
        }
        let (a, off) = self.range(addr, out.len() as u64)?;
        a.read(off, out);
        Ok(())
    }

    /// What a stray address is: inside a freed allocation, or in no allocation at all.
    pub fn describe_stray(&self, addr: u64) -> String {
        let s = self.state();
        match s.freed.iter().rev().find(|&&(b, n)| addr >= b && addr < b + n) {
            Some(&(b, n)) => {
                format!("use after free: inside the freed allocation {b:#x}..{:#x} ({n} bytes)", b + n)
            }
            None => "not inside any live allocation".to_owned(),
        }
    }

    /// A snapshot of the live allocations for a launch (no allocation changes during one).
    pub fn view(self: &Arc<Self>) -> MemoryView {
        let s = self.state();
        MemoryView { allocations: s.live.values().cloned().collect(), memory: self.clone() }
    }
}

/// The live allocations as a kernel sees them, sorted by address.
pub struct MemoryView {
    allocations: Vec<Arc<Allocation>>,
    memory: Arc<DeviceMemory>,
}

impl MemoryView {
    /// The allocation and offset holding `addr .. + len`, with `align` checked, or the fault.
    #[inline]
    pub fn locate(&self, addr: u64, len: u64, align: u64) -> Result<(&Allocation, u64), Fault> {
        self.locate_near(addr, len, align, &mut 0)
    }

    /// [`MemoryView::locate`], trying the allocation at index `*hint` first (the last one a
    /// warp touched: consecutive accesses nearly always hit the same buffer) and leaving the
    /// index of the hit there.
    #[inline]
    pub fn locate_near(
        &self,
        addr: u64,
        len: u64,
        align: u64,
        hint: &mut usize,
    ) -> Result<(&Allocation, u64), Fault> {
        if addr % align != 0 {
            return Err(Fault::new(
                FaultKind::Misaligned,
                format!("global address {addr:#x} is not aligned to {align} bytes"),
            ));
        }
        if let Some(a) = self.allocations.get(*hint)
            && addr >= a.base
            && a.contains(addr - a.base, len)
        {
            return Ok((a, addr - a.base));
        }
        let i = self.allocations.partition_point(|a| a.base <= addr);
        let hit = i.checked_sub(1).filter(|&i| {
            let a = &self.allocations[i];
            a.contains(addr - a.base, len)
        });
        match hit {
            Some(i) => {
                *hint = i;
                let a = &*self.allocations[i];
                Ok((a, addr - a.base))
            }
            None => Err(self.stray(addr, len)),
        }
    }

    #[cold]
    fn stray(&self, addr: u64, len: u64) -> Fault {
        let i = self.allocations.partition_point(|a| a.base <= addr);
        let why = match i.checked_sub(1).map(|i| &self.allocations[i]) {
            Some(a) if addr < a.base + a.size => format!("runs past the end of {a:?}"),
            Some(a) if addr < a.base + a.size.next_multiple_of(ALLOC_ALIGN) + ALLOC_ALIGN => {
                format!("{} bytes past the end of {a:?}", addr - (a.base + a.size))
            }
            _ => self.memory.describe_stray(addr),
        };
        Fault::new(FaultKind::IllegalAddress, format!("global access of {len} bytes at {addr:#x}: {why}"))
    }

    /// Reads `out.len()` bytes at `addr`, checking bounds, alignment and that they were written;
    /// `hint` as in [`MemoryView::locate_near`].
    #[inline]
    pub fn load(
        &self,
        addr: u64,
        out: &mut [u8],
        align: u64,
        check_written: bool,
        hint: &mut usize,
    ) -> Result<(), Fault> {
        let (a, off) = self.locate_near(addr, out.len() as u64, align, hint)?;
        if check_written && let Some(bad) = a.first_unwritten(off, out.len() as u64) {
            return Err(Fault::new(
                FaultKind::UninitializedRead,
                format!("read of never-written device memory at {:#x} (byte {bad} of {a:?})", a.base + bad),
            ));
        }
        a.read(off, out);
        Ok(())
    }

    /// Writes `data` at `addr`, checking bounds and alignment; `hint` as in
    /// [`MemoryView::locate_near`].
    #[inline]
    pub fn store(&self, addr: u64, data: &[u8], align: u64, hint: &mut usize) -> Result<(), Fault> {
        let (a, off) = self.locate_near(addr, data.len() as u64, align, hint)?;
        a.write(off, data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_aligned_and_never_reused() {
        let m = Arc::new(DeviceMemory::new(1 << 20));
        let a = m.alloc(10).unwrap();
        let b = m.alloc(300).unwrap();
        assert_eq!(a % ALLOC_ALIGN, 0);
        assert_eq!(b % ALLOC_ALIGN, 0);
        m.free(a).unwrap();
        let c = m.alloc(10).unwrap();
        assert!(c != a && c > b);
        assert!(m.describe_stray(a + 3).contains("use after free"));
        assert_eq!(m.free(a), Err(MemoryError::NotAnAllocation(a)));
    }

    #[test]
    fn out_of_memory() {
        let m = DeviceMemory::new(1024);
        m.alloc(1000).unwrap();
        assert!(matches!(m.alloc(100), Err(MemoryError::OutOfMemory { .. })));
        assert_eq!(m.info(), (0, 1024));
    }

    #[test]
    fn shadow_tracks_written_bytes() {
        let m = Arc::new(DeviceMemory::new(1 << 20));
        let a = m.alloc(64).unwrap();
        m.write(a + 3, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]).unwrap();
        let v = m.view();
        let mut out = [0u8; 4];
        v.load(a + 4, &mut out, 4, true, &mut 0).unwrap();
        assert_eq!(out, [2, 3, 4, 5]);
        let e = v.load(a + 12, &mut out, 4, true, &mut 0).unwrap_err();
        assert_eq!(e.kind, FaultKind::UninitializedRead);
        assert!(e.message.contains(&format!("{:#x}", a + 14)), "{}", e.message);
        assert_eq!(v.load(a + 2, &mut out, 4, false, &mut 0).unwrap_err().kind, FaultKind::Misaligned);
        assert_eq!(v.load(a + 64, &mut out, 4, false, &mut 0).unwrap_err().kind, FaultKind::IllegalAddress);
        assert_eq!(
            v.load(a + 62, &mut out[..2], 2, false, &mut 0).map(|_| out[..2].to_vec()).unwrap(),
            vec![0, 0]
        );
    }
}
