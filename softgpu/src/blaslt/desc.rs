//! The opaque objects behind cuBLASLt's handles (the library handle, matmul descriptors, matrix
//! layouts, preferences) and their attributes.
//!
//! Every attribute is kept as the raw bytes of its C type, in a slot sized by a table per object
//! kind. That makes `Set`/`Get` one generic, size-checked copy (cuBLASLt answers
//! `CUBLAS_STATUS_INVALID_VALUE` to an unknown attribute or a `sizeInBytes` other than its C
//! type's), and keeps attributes this implementation does not act on readable back, as the real
//! library's are. What an attribute *means* is decided where it is used (`plan.rs`).

use super::types::{FILL_MODE_FULL, ORDER_COL, epilogue, operation, pointer_mode};

/// One attribute: its id (the enum value), the size of its C type and its name for messages.
#[derive(Clone, Copy, Debug)]
pub struct AttrSpec {
    pub id: u32,
    pub size: usize,
    pub name: &'static str,
}

const fn spec(id: u32, size: usize, name: &'static str) -> AttrSpec {
    AttrSpec { id, size, name }
}

/// `cublasLtMatmulDescAttributes_t` (CUDA 12.8).
pub mod matmul_attr {
    pub const COMPUTE_TYPE: u32 = 0;
    pub const SCALE_TYPE: u32 = 1;
    pub const POINTER_MODE: u32 = 2;
    pub const TRANSA: u32 = 3;
    pub const TRANSB: u32 = 4;
    pub const TRANSC: u32 = 5;
    pub const FILL_MODE: u32 = 6;
    pub const EPILOGUE: u32 = 7;
    pub const BIAS_POINTER: u32 = 8;
    pub const BIAS_BATCH_STRIDE: u32 = 10;
    pub const EPILOGUE_AUX_POINTER: u32 = 11;
    pub const A_SCALE_POINTER: u32 = 17;
    pub const B_SCALE_POINTER: u32 = 18;
    pub const C_SCALE_POINTER: u32 = 19;
    pub const D_SCALE_POINTER: u32 = 20;
    pub const AMAX_D_POINTER: u32 = 21;
    pub const EPILOGUE_AUX_DATA_TYPE: u32 = 22;
    pub const BIAS_DATA_TYPE: u32 = 26;
    pub const ATOMIC_SYNC_IN_COUNTERS_POINTER: u32 = 29;
    pub const ATOMIC_SYNC_OUT_COUNTERS_POINTER: u32 = 30;
    pub const A_SCALE_MODE: u32 = 31;
    pub const D_OUT_SCALE_POINTER: u32 = 36;
    pub const D_OUT_SCALE_MODE: u32 = 37;
}

/// Sizes per the types `cublasLt.h` documents for each attribute (`int32_t`, `uint32_t`,
/// `int64_t`, pointers, the `int8_t` fast-accumulation flag).
pub const MATMUL_ATTRS: &[AttrSpec] = &[
    spec(0, 4, "COMPUTE_TYPE"),
    spec(1, 4, "SCALE_TYPE"),
    spec(2, 4, "POINTER_MODE"),
    spec(3, 4, "TRANSA"),
    spec(4, 4, "TRANSB"),
    spec(5, 4, "TRANSC"),
    spec(6, 4, "FILL_MODE"),
    spec(7, 4, "EPILOGUE"),
    spec(8, 8, "BIAS_POINTER"),
    spec(10, 8, "BIAS_BATCH_STRIDE"),
    spec(11, 8, "EPILOGUE_AUX_POINTER"),
    spec(12, 8, "EPILOGUE_AUX_LD"),
    spec(13, 8, "EPILOGUE_AUX_BATCH_STRIDE"),
    spec(14, 8, "ALPHA_VECTOR_BATCH_STRIDE"),
    spec(15, 4, "SM_COUNT_TARGET"),
    spec(17, 8, "A_SCALE_POINTER"),
    spec(18, 8, "B_SCALE_POINTER"),
    spec(19, 8, "C_SCALE_POINTER"),
    spec(20, 8, "D_SCALE_POINTER"),
    spec(21, 8, "AMAX_D_POINTER"),
    spec(22, 4, "EPILOGUE_AUX_DATA_TYPE"),
    spec(23, 8, "EPILOGUE_AUX_SCALE_POINTER"),
    spec(24, 8, "EPILOGUE_AUX_AMAX_POINTER"),
    spec(25, 1, "FAST_ACCUM"),
    spec(26, 4, "BIAS_DATA_TYPE"),
    spec(27, 4, "ATOMIC_SYNC_NUM_CHUNKS_D_ROWS"),
    spec(28, 4, "ATOMIC_SYNC_NUM_CHUNKS_D_COLS"),
    spec(29, 8, "ATOMIC_SYNC_IN_COUNTERS_POINTER"),
    spec(30, 8, "ATOMIC_SYNC_OUT_COUNTERS_POINTER"),
    spec(31, 4, "A_SCALE_MODE"),
    spec(32, 4, "B_SCALE_MODE"),
    spec(33, 4, "C_SCALE_MODE"),
    spec(34, 4, "D_SCALE_MODE"),
    spec(35, 4, "EPILOGUE_AUX_SCALE_MODE"),
    spec(36, 8, "D_OUT_SCALE_POINTER"),
    spec(37, 4, "D_OUT_SCALE_MODE"),
];

/// `cublasLtMatrixLayoutAttribute_t` (CUDA 12.8).
pub mod layout_attr {
    pub const TYPE: u32 = 0;
    pub const ORDER: u32 = 1;
    pub const ROWS: u32 = 2;
    pub const COLS: u32 = 3;
    pub const LD: u32 = 4;
    pub const BATCH_COUNT: u32 = 5;
    pub const STRIDED_BATCH_OFFSET: u32 = 6;
    pub const PLANE_OFFSET: u32 = 7;
}

pub const LAYOUT_ATTRS: &[AttrSpec] = &[
    spec(0, 4, "TYPE"),
    spec(1, 4, "ORDER"),
    spec(2, 8, "ROWS"),
    spec(3, 8, "COLS"),
    spec(4, 8, "LD"),
    spec(5, 4, "BATCH_COUNT"),
    spec(6, 8, "STRIDED_BATCH_OFFSET"),
    spec(7, 8, "PLANE_OFFSET"),
];

/// `cublasLtMatmulPreferenceAttributes_t` (CUDA 12.8).
pub mod pref_attr {
    pub const SEARCH_MODE: u32 = 0;
    pub const MAX_WORKSPACE_BYTES: u32 = 1;
    pub const REDUCTION_SCHEME_MASK: u32 = 3;
    pub const MIN_ALIGNMENT_A_BYTES: u32 = 5;
    pub const MIN_ALIGNMENT_B_BYTES: u32 = 6;
    pub const MIN_ALIGNMENT_C_BYTES: u32 = 7;
    pub const MIN_ALIGNMENT_D_BYTES: u32 = 8;
    pub const IMPL_MASK: u32 = 12;
}

pub const PREF_ATTRS: &[AttrSpec] = &[
    spec(0, 4, "SEARCH_MODE"),
    spec(1, 8, "MAX_WORKSPACE_BYTES"),
    spec(3, 4, "REDUCTION_SCHEME_MASK"),
    spec(5, 4, "MIN_ALIGNMENT_A_BYTES"),
    spec(6, 4, "MIN_ALIGNMENT_B_BYTES"),
    spec(7, 4, "MIN_ALIGNMENT_C_BYTES"),
    spec(8, 4, "MIN_ALIGNMENT_D_BYTES"),
    spec(9, 4, "MAX_WAVES_COUNT"),
    spec(12, 8, "IMPL_MASK"),
];

/// Why an attribute access was refused (both are `CUBLAS_STATUS_INVALID_VALUE`).
#[derive(Clone, Debug, PartialEq)]
pub enum AttrError {
    Unknown(u32),
    WrongSize { name: &'static str, expected: usize, got: usize },
}

impl std::fmt::Display for AttrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttrError::Unknown(id) => write!(f, "unknown attribute {id}"),
            AttrError::WrongSize { name, expected, got } => {
                write!(f, "attribute {name} is {expected} bytes, sizeInBytes was {got}")
            }
        }
    }
}

/// The attribute values of one object, as raw native-endian bytes in 8-byte slots.
#[derive(Clone, Debug)]
pub struct Attrs {
    table: &'static [AttrSpec],
    values: Vec<[u8; 8]>,
}

impl Attrs {
    /// All attributes zero; the constructors below then set the documented defaults.
    fn zeroed(table: &'static [AttrSpec]) -> Self {
        Attrs { table, values: vec![[0; 8]; table.len()] }
    }

    fn index(&self, id: u32) -> Result<usize, AttrError> {
        self.table.iter().position(|s| s.id == id).ok_or(AttrError::Unknown(id))
    }

    /// The size of attribute `id`'s C type.
    pub fn size_of(&self, id: u32) -> Result<usize, AttrError> {
        Ok(self.table[self.index(id)?].size)
    }

    /// Attribute `id`'s bytes, if `size` is its C type's size (as `Get*Attribute` requires).
    pub fn get_sized(&self, id: u32, size: usize) -> Result<&[u8], AttrError> {
        let spec = self.table[self.index(id)?];
        if size != spec.size {
            return Err(AttrError::WrongSize { name: spec.name, expected: spec.size, got: size });
        }
        self.get(id)
    }

    /// Sets attribute `id` from exactly its C type's bytes.
    pub fn set(&mut self, id: u32, bytes: &[u8]) -> Result<(), AttrError> {
        let i = self.index(id)?;
        let spec = self.table[i];
        if bytes.len() != spec.size {
            return Err(AttrError::WrongSize { name: spec.name, expected: spec.size, got: bytes.len() });
        }
        self.values[i] = [0; 8];
        self.values[i][..spec.size].copy_from_slice(bytes);
        Ok(())
    }

    /// Attribute `id`'s bytes (its C type's size of them).
    pub fn get(&self, id: u32) -> Result<&[u8], AttrError> {
        let i = self.index(id)?;
        Ok(&self.values[i][..self.table[i].size])
    }

    /// Sets an attribute from a typed value (for the defaults; `id` is from the table).
    fn put<const N: usize>(&mut self, id: u32, bytes: [u8; N]) {
        self.set(id, &bytes).expect("a default for a known attribute of its size");
    }

    /// The raw slot, for the typed readers; panics on an id outside the table (a bug here).
    fn slot(&self, id: u32) -> [u8; 8] {
        self.values[self.index(id).expect("a known attribute")]
    }

    pub fn u32(&self, id: u32) -> u32 {
        let s = self.slot(id);
        u32::from_ne_bytes([s[0], s[1], s[2], s[3]])
    }

    pub fn i32(&self, id: u32) -> i32 {
        self.u32(id) as i32
    }

    pub fn u64(&self, id: u32) -> u64 {
        u64::from_ne_bytes(self.slot(id))
    }

    pub fn i64(&self, id: u32) -> i64 {
        self.u64(id) as i64
    }
}

/// Tags at the start of each object, so that a handle of the wrong kind (a layout passed as a
/// matmul descriptor) is refused rather than misread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Kind {
    Handle = 0x6b69_6c6e_4c74_4831,
    MatmulDesc = 0x6b69_6c6e_4c74_4431,
    Layout = 0x6b69_6c6e_4c74_4c31,
    Preference = 0x6b69_6c6e_4c74_5031,
}

/// What a `cublasLtHandle_t` points to. The software GPU has one device and no per-handle
/// state, so the handle only proves `cublasLtCreate` was called.
#[repr(C)]
pub struct Handle {
    pub kind: Kind,
}

/// What a `cublasLtMatmulDesc_t` points to.
#[repr(C)]
pub struct MatmulDesc {
    pub kind: Kind,
    pub attrs: Attrs,
}

impl MatmulDesc {
    /// A descriptor with cuBLASLt's documented defaults: no transposes, pointer mode host,
    /// full fill mode, default epilogue, bias and aux types "same as D" (-1).
    pub fn new(compute_type: u32, scale_type: u32) -> Self {
        use matmul_attr::*;
        let mut attrs = Attrs::zeroed(MATMUL_ATTRS);
        attrs.put(COMPUTE_TYPE, compute_type.to_ne_bytes());
        attrs.put(SCALE_TYPE, scale_type.to_ne_bytes());
        attrs.put(POINTER_MODE, pointer_mode::HOST.to_ne_bytes());
        for t in [TRANSA, TRANSB, TRANSC] {
            attrs.put(t, operation::N.to_ne_bytes());
        }
        attrs.put(FILL_MODE, FILL_MODE_FULL.to_ne_bytes());
        attrs.put(EPILOGUE, epilogue::DEFAULT.to_ne_bytes());
        attrs.put(BIAS_DATA_TYPE, (-1i32).to_ne_bytes());
        attrs.put(EPILOGUE_AUX_DATA_TYPE, (-1i32).to_ne_bytes());
        MatmulDesc { kind: Kind::MatmulDesc, attrs }
    }
}

/// What a `cublasLtMatrixLayout_t` points to.
#[repr(C)]
pub struct MatrixLayout {
    pub kind: Kind,
    pub attrs: Attrs,
}

impl MatrixLayout {
    /// A single (batch count 1) column-major matrix.
    pub fn new(data_type: u32, rows: u64, cols: u64, ld: i64) -> Self {
        use layout_attr::*;
        let mut attrs = Attrs::zeroed(LAYOUT_ATTRS);
        attrs.put(TYPE, data_type.to_ne_bytes());
        attrs.put(ORDER, ORDER_COL.to_ne_bytes());
        attrs.put(ROWS, rows.to_ne_bytes());
        attrs.put(COLS, cols.to_ne_bytes());
        attrs.put(LD, ld.to_ne_bytes());
        attrs.put(BATCH_COUNT, 1i32.to_ne_bytes());
        MatrixLayout { kind: Kind::Layout, attrs }
    }
}

/// What a `cublasLtMatmulPreference_t` points to. Its attributes only steer the choice among
/// kernels, of which there is one here; they are kept for `Get` and otherwise unused.
#[repr(C)]
pub struct Preference {
    pub kind: Kind,
    pub attrs: Attrs,
}

impl Preference {
    /// Defaults as documented: no workspace, every reduction scheme and implementation allowed,
    /// pointers assumed 256-byte aligned.
    pub fn new() -> Self {
        use pref_attr::*;
        let mut attrs = Attrs::zeroed(PREF_ATTRS);
        attrs.put(REDUCTION_SCHEME_MASK, 7u32.to_ne_bytes());
        for a in [MIN_ALIGNMENT_A_BYTES, MIN_ALIGNMENT_B_BYTES, MIN_ALIGNMENT_C_BYTES, MIN_ALIGNMENT_D_BYTES]
        {
            attrs.put(a, 256u32.to_ne_bytes());
        }
        attrs.put(IMPL_MASK, u64::MAX.to_ne_bytes());
        Preference { kind: Kind::Preference, attrs }
    }
}

impl Default for Preference {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_checks_id_and_size() {
        let mut d = MatmulDesc::new(68, 0);
        assert_eq!(d.attrs.i32(matmul_attr::TRANSA), 0);
        d.attrs.set(matmul_attr::TRANSA, &1i32.to_ne_bytes()).unwrap();
        assert_eq!(d.attrs.i32(matmul_attr::TRANSA), 1);
        assert_eq!(d.attrs.set(9, &[0; 4]), Err(AttrError::Unknown(9)));
        assert!(matches!(d.attrs.set(matmul_attr::TRANSA, &[0; 8]), Err(AttrError::WrongSize { .. })));
        assert_eq!(d.attrs.i32(matmul_attr::BIAS_DATA_TYPE), -1);
    }

    #[test]
    fn layout_defaults() {
        let l = MatrixLayout::new(14, 3, 5, 4);
        assert_eq!(l.attrs.u64(layout_attr::ROWS), 3);
        assert_eq!(l.attrs.i64(layout_attr::LD), 4);
        assert_eq!(l.attrs.i32(layout_attr::BATCH_COUNT), 1);
        assert_eq!(l.attrs.get(layout_attr::STRIDED_BATCH_OFFSET).unwrap(), &[0; 8]);
    }
}
