//! Helpers shared by the ALU instruction tests (isa_int, isa_bits, isa_compare, isa_moves):
//! one thread per input row, real PTX text, seeded random inputs with edge values mixed in.

#![allow(dead_code)]

use kiln_softgpu::testing::{Arg, Harness, kernel_ptx};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Runs `body` once per row, each on its own thread (one CTA). In `body`, `%in` is the
/// address of the row's four u64 input slots and `%out` of four zeroed u64 output slots.
/// `decl` declares the registers `body` uses.
pub fn run_rows(decl: &str, body: &str, rows: &[[u64; 4]]) -> Vec<[u64; 4]> {
    assert!(!rows.is_empty() && rows.len() <= 1024);
    let h = Harness::new();
    let input = h.buffer(&rows.iter().flatten().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>());
    let out = h.buffer(&vec![0u8; rows.len() * 32]);
    let ptx = kernel_ptx(
        ".param .u64 pin, .param .u64 pout",
        &format!(
            "  .reg .b32 %tix;\n  .reg .b64 %in, %out, %off;\n{decl}\n  ld.param.u64 %in, [pin];\n  ld.param.u64 %out, [pout];\n  mov.u32 %tix, %tid.x;\n  mul.wide.u32 %off, %tix, 32;\n  add.s64 %in, %in, %off;\n  add.s64 %out, %out, %off;\n{body}\n  ret;"
        ),
    );
    h.run(&ptx, "k", [1, 1, 1], [rows.len() as u32, 1, 1], 0, &[Arg::U64(input), Arg::U64(out)])
        .unwrap_or_else(|e| panic!("launch failed: {e}\n{body}"));
    h.read_u64(out, rows.len() * 4).chunks(4).map(|c| [c[0], c[1], c[2], c[3]]).collect()
}

/// `op %d, %a0, %a1[, %a2]` with sources of register type `src` and a destination of `dst`
/// (`b16`, `b32`, `b64`, `f32`, `f64`, `pred`), `nsrc` sources from each row's first slots.
/// Returns each row's `%d` (a predicate as 0/1).
pub fn op(op: &str, src: &str, dst: &str, nsrc: usize, rows: &[[u64; 4]]) -> Vec<u64> {
    let srcs: Vec<String> = (0..nsrc).map(|k| format!("%a{k}")).collect();
    let loads: String = (0..nsrc).map(|k| format!("  ld.global.{src} %a{k}, [%in+{}];\n", 8 * k)).collect();
    let (decl_d, store) = if dst == "pred" {
        (
            "  .reg .pred %d;\n  .reg .b32 %dv;".to_owned(),
            "  selp.b32 %dv, 1, 0, %d;\n  st.global.b32 [%out], %dv;".to_owned(),
        )
    } else {
        (format!("  .reg .{dst} %d;"), format!("  st.global.{dst} [%out], %d;"))
    };
    let decl = format!("  .reg .{src} %a<4>;\n{decl_d}");
    let body = format!("{loads}  {op} %d, {};\n{store}", srcs.join(", "));
    run_rows(&decl, &body, rows).iter().map(|r| r[0]).collect()
}

/// A seeded generator.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A random 64-bit pattern, an edge value a third of the time (0, 1, all ones, the sign
/// bits and their neighbours of each width, small numbers).
pub fn value(rng: &mut StdRng) -> u64 {
    const EDGES: &[u64] = &[
        0,
        1,
        2,
        u64::MAX,
        0x7fff,
        0x8000,
        0xffff,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
        0x7fff_ffff_ffff_ffff,
        0x8000_0000_0000_0000,
        0xffff_fffe,
        0xffff_ffff_ffff_fffe,
        3,
        7,
        31,
        32,
        33,
        63,
        64,
    ];
    match rng.random_range(0..6) {
        0 | 1 => EDGES[rng.random_range(0..EDGES.len())],
        2 => rng.random_range(0..100),
        _ => rng.random(),
    }
}

/// `n` rows of random values (see [`value`]).
pub fn rows(seed: u64, n: usize) -> Vec<[u64; 4]> {
    let mut r = rng(seed);
    (0..n).map(|_| [value(&mut r), value(&mut r), value(&mut r), value(&mut r)]).collect()
}

/// `v` truncated to `bits` and sign- or zero-extended to i128.
pub fn ext(v: u64, bits: u32, signed: bool) -> i128 {
    let m = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
    let v = v & m;
    if signed && bits < 64 && v >> (bits - 1) & 1 == 1 {
        v as i128 - (1i128 << bits)
    } else if signed && bits == 64 {
        v as i64 as i128
    } else {
        v as i128
    }
}

/// The low `bits` bits of `v`.
pub fn trunc(v: i128, bits: u32) -> u64 {
    (v as u128 & if bits >= 128 { u128::MAX } else { (1u128 << bits) - 1 }) as u64
}

/// The integer types: PTX name, register type, width, signedness.
pub const INT_TYPES: &[(&str, &str, u32, bool)] = &[
    ("u16", "b16", 16, false),
    ("s16", "b16", 16, true),
    ("u32", "b32", 32, false),
    ("s32", "b32", 32, true),
    ("u64", "b64", 64, false),
    ("s64", "b64", 64, true),
];
