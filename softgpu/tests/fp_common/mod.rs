//! Shared helpers of the floating-point ISA tests: run one instruction over many input cases
//! through real PTX (one thread, the cases unrolled), random values, and reference rounding
//! written independently of the interpreter (from native host rounding plus neighbours).
#![allow(dead_code)]

use kiln_softgpu::testing::{Arg, Harness, kernel_ptx};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A register type of the test kernel: its PTX name and byte width in memory.
fn width(ty: &str) -> u32 {
    match ty {
        "b16" | "f16" | "u16" | "s16" | "bf16" => 2,
        "b32" | "f32" | "u32" | "s32" => 4,
        "b64" | "f64" | "u64" | "s64" => 8,
        "pred" => 1,
        other => panic!("no width for {other}"),
    }
}

fn reg_decl(ty: &str) -> &str {
    match ty {
        "bf16" => "b16",
        t => t,
    }
}

/// Runs `inst` (written with `%d` as destination and `%a0`, `%a1`, ... as sources) once per
/// case. `srcs` are the source register types, `dst` the destination's; each case gives the
/// source bit patterns. A `pred` destination comes back as 0 or 1.
pub fn run(inst: &str, dst: &str, srcs: &[&str], cases: &[Vec<u64>]) -> Vec<u64> {
    let mut out = Vec::with_capacity(cases.len());
    for chunk in cases.chunks(256) {
        out.extend(run_chunk(inst, dst, srcs, chunk));
    }
    out
}

fn run_chunk(inst: &str, dst: &str, srcs: &[&str], cases: &[Vec<u64>]) -> Vec<u64> {
    let h = Harness::new();
    let n = srcs.len().max(1);
    let mut input = vec![0u64; cases.len() * n + 1];
    for (i, c) in cases.iter().enumerate() {
        assert_eq!(c.len(), srcs.len(), "case {i} has the wrong number of sources");
        input[i * n..i * n + c.len()].copy_from_slice(c);
    }
    let one = cases.len() * n;
    input[one] = 1;
    let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
    let inb = h.buffer(&bytes);
    let outb = h.buffer(&vec![0u8; cases.len() * 8]);
    let mut body = String::from("  .reg .b64 %rd<3>;\n  .reg .b32 %one;\n");
    body += &format!("  .reg .{} %d;\n", reg_decl(dst));
    for (k, t) in srcs.iter().enumerate() {
        body += &format!("  .reg .{} %a{k};\n", reg_decl(t));
    }
    body += "  ld.param.u64 %rd1, [p_in];\n  ld.param.u64 %rd2, [p_out];\n";
    body += &format!("  ld.global.u32 %one, [%rd1+{}];\n", one * 8);
    for i in 0..cases.len() {
        for (k, t) in srcs.iter().enumerate() {
            body += &format!("  ld.global.b{} %a{k}, [%rd1+{}];\n", width(t) * 8, (i * n + k) * 8);
        }
        body += &format!("  {inst}\n");
        if dst == "pred" {
            body += &format!("  @%d st.global.u32 [%rd2+{}], %one;\n", i * 8);
        } else {
            body += &format!("  st.global.b{} [%rd2+{}], %d;\n", width(dst) * 8, i * 8);
        }
    }
    body += "  ret;";
    let ptx = kernel_ptx(".param .u64 p_in, .param .u64 p_out", &body);
    h.run(&ptx, "k", [1, 1, 1], [1, 1, 1], 0, &[Arg::U64(inb), Arg::U64(outb)])
        .unwrap_or_else(|e| panic!("`{inst}` failed: {e}"));
    let mask = if dst == "pred" { 1 } else { u64::MAX >> (64 - 8 * width(dst)) };
    h.read_u64(outb, cases.len()).into_iter().map(|v| v & mask).collect()
}

/// Whether loading `inst` is refused as unsupported (the loader names the instruction).
pub fn refused(inst: &str, dst: &str, srcs: &[&str]) -> bool {
    let h = Harness::new();
    let mut body = format!("  .reg .{} %d;\n", reg_decl(dst));
    for (k, t) in srcs.iter().enumerate() {
        body += &format!("  .reg .{} %a{k};\n", reg_decl(t));
    }
    body += &format!("  {inst}\n  ret;");
    match h.load(&kernel_ptx("", &body)) {
        Ok(_) => false,
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(inst.split_whitespace().next().unwrap()), "{msg}");
            true
        }
    }
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A random f32 with a biased exponent in `[lo, hi]` (0 gives sub-normals), random sign and
/// fraction.
pub fn f32_in(r: &mut StdRng, lo: u32, hi: u32) -> f32 {
    let e = r.random_range(lo..=hi);
    let m = r.random::<u32>() & 0x7f_ffff;
    let m = if e == 0 && m == 0 { 1 } else { m };
    f32::from_bits((r.random::<bool>() as u32) << 31 | e << 23 | m)
}

/// A random f64 with a biased exponent in `[lo, hi]`.
pub fn f64_in(r: &mut StdRng, lo: u64, hi: u64) -> f64 {
    let e = r.random_range(lo..=hi);
    let m = r.random::<u64>() & ((1 << 52) - 1);
    f64::from_bits((r.random::<bool>() as u64) << 63 | e << 52 | m)
}

/// A random f32 with only `bits` significant fraction bits (so sums and products stay
/// exact in f64).
pub fn f32_short(r: &mut StdRng, lo: u32, hi: u32, bits: u32) -> f32 {
    let x = f32_in(r, lo.max(1), hi);
    f32::from_bits(x.to_bits() & !((1u32 << (23 - bits)) - 1))
}

/// Rounding directions, as the tests name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    N,
    Z,
    M,
    P,
}

pub const MODES: [(Mode, &str); 4] = [(Mode::N, "rn"), (Mode::Z, "rz"), (Mode::M, "rm"), (Mode::P, "rp")];

/// `x` (exact in f64) rounded to f32 in `mode`: the host's nearest-even cast, then one step
/// to the neighbour the direction asks for.
pub fn f64_to_f32(x: f64, mode: Mode) -> f32 {
    let r = x as f32;
    if x.is_nan() || r as f64 == x {
        return r;
    }
    let above = r as f64 > x;
    match mode {
        Mode::N => r,
        Mode::M => {
            if above {
                next_down32(r)
            } else {
                r
            }
        }
        Mode::P => {
            if above {
                r
            } else {
                next_up32(r)
            }
        }
        Mode::Z => {
            if x > 0.0 && above {
                next_down32(r)
            } else if x < 0.0 && !above {
                next_up32(r)
            } else {
                r
            }
        }
    }
}

/// `q` (the nearest-even result) adjusted to `mode`, given the sign of `exact - q`, with the
/// format's neighbours `down` and `up`.
fn adjust<T: Copy + PartialOrd + Default>(q: T, err: f64, mode: Mode, down: fn(T) -> T, up: fn(T) -> T) -> T {
    let zero = T::default();
    if err == 0.0 || q != q {
        return q;
    }
    match mode {
        Mode::N => q,
        Mode::M if err < 0.0 => down(q),
        Mode::P if err > 0.0 => up(q),
        Mode::Z if q > zero && err < 0.0 => down(q),
        Mode::Z if q < zero && err > 0.0 => up(q),
        _ => q,
    }
}

/// [`adjust`] for f64.
pub fn adjust64(q: f64, err: f64, mode: Mode) -> f64 {
    adjust(q, err, mode, next_down64, next_up64)
}

/// [`adjust`] for f32.
pub fn adjust32(q: f32, err: f64, mode: Mode) -> f32 {
    adjust(q, err, mode, next_down32, next_up32)
}

/// A 16-bit format's positive finite values in order, for reference rounding by search.
pub struct Table16 {
    /// (value, bits), ascending, +0 first.
    vals: Vec<(f64, u16)>,
    pub inf: u16,
    /// 2^(emax+1): where "the next value after the largest" would be.
    beyond: f64,
}

impl Table16 {
    pub fn new(to_f64: impl Fn(u16) -> f64, exp_bits: u32) -> Table16 {
        let frac = 15 - exp_bits;
        let inf = (((1u32 << exp_bits) - 1) << frac) as u16;
        let vals: Vec<(f64, u16)> = (0..inf).map(|b| (to_f64(b), b)).collect();
        assert!(vals.windows(2).all(|w| w[0].0 < w[1].0));
        let emax = (1i32 << (exp_bits - 1)) - 1;
        Table16 { vals, inf, beyond: 2f64.powi(emax + 1) }
    }

    pub fn f16() -> Table16 {
        Table16::new(|b| half::f16::from_bits(b).to_f64(), 5)
    }

    pub fn bf16() -> Table16 {
        Table16::new(|b| f32::from_bits((b as u32) << 16) as f64, 8)
    }

    /// `x` rounded in `mode` to this format (NaN → None).
    pub fn round(&self, x: f64, mode: Mode) -> Option<u16> {
        if x.is_nan() {
            return None;
        }
        let neg = x.is_sign_negative();
        let sign = if neg { 0x8000 } else { 0 };
        let a = x.abs();
        if a.is_infinite() {
            return Some(sign | self.inf);
        }
        // lo ≤ a < hi, hi possibly "beyond" (infinity's slot).
        let i = self.vals.partition_point(|v| v.0 <= a);
        let (lo_v, lo_b) = self.vals[i - 1];
        let (hi_v, hi_b) = self.vals.get(i).copied().unwrap_or((self.beyond, self.inf));
        if lo_v == a {
            return Some(sign | lo_b);
        }
        let away = match mode {
            Mode::N => {
                let (dl, dh) = (a - lo_v, hi_v - a);
                dh < dl || (dh == dl && lo_b & 1 == 1)
            }
            Mode::Z => false,
            Mode::M => neg,
            Mode::P => !neg,
        };
        let b = if away { hi_b } else { lo_b };
        // Rounding away past the largest finite gives infinity only to nearest or toward it.
        Some(sign | b)
    }
}

/// Whether a 16-bit pattern is NaN in a format with `exp_bits` exponent bits.
pub fn nan16(b: u64, exp_bits: u32) -> bool {
    let frac = 15 - exp_bits;
    let e = (b >> frac) & ((1 << exp_bits) - 1);
    e == (1 << exp_bits) - 1 && b & ((1 << frac) - 1) != 0
}

/// The distance in ulps between two finite f32 of the same sign.
pub fn ulps32(a: f32, b: f32) -> u32 {
    let key = |x: f32| {
        let b = x.to_bits() as i64;
        if b < 0 || x.is_sign_negative() { -(b & 0x7fff_ffff) } else { b }
    };
    (key(a) - key(b)).unsigned_abs() as u32
}

/// The next f32 above `x` (f32::next_up needs Rust 1.86; the crate supports 1.85).
pub fn next_up32(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f32::from_bits(1);
    }
    let b = x.to_bits();
    f32::from_bits(if x > 0.0 { b + 1 } else { b - 1 })
}

pub fn next_down32(x: f32) -> f32 {
    -next_up32(-x)
}

pub fn next_up64(x: f64) -> f64 {
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f64::from_bits(1);
    }
    let b = x.to_bits();
    f64::from_bits(if x > 0.0 { b + 1 } else { b - 1 })
}

pub fn next_down64(x: f64) -> f64 {
    -next_up64(-x)
}
