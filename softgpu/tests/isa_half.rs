//! Half-precision arithmetic against PTX ISA 9.7.4: f16/bf16 scalar and x2 `add`, `sub`,
//! `mul`, `fma` rounded once to nearest even (checked against a search of every value of the
//! format), the x2 element layout (element 0 in bits 0-15), `.ftz`, `.sat`, `.relu`, and the
//! `min`/`max` NaN and signed-zero rules.

mod fp_common;

use fp_common::{Mode, Table16, nan16, rng, run};
use rand::Rng;
use rand::rngs::StdRng;

/// An opcode, its source count, and its exact value in f64.
type Op = (&'static str, usize, fn(&[f64]) -> f64);

struct Format {
    name: &'static str,
    table: Table16,
    exp_bits: u32,
    to_f64: fn(u16) -> f64,
}

fn f16_val(b: u16) -> f64 {
    half::f16::from_bits(b).to_f64()
}

fn bf16_val(b: u16) -> f64 {
    f32::from_bits((b as u32) << 16) as f64
}

fn formats() -> [Format; 2] {
    [
        Format { name: "f16", table: Table16::f16(), exp_bits: 5, to_f64: f16_val },
        Format { name: "bf16", table: Table16::bf16(), exp_bits: 8, to_f64: bf16_val },
    ]
}

/// A random finite value of the format with a biased exponent within `spread` of `center`
/// (0 gives sub-normals).
fn rand16(r: &mut StdRng, f: &Format, center: i32, spread: i32) -> u16 {
    let frac = 15 - f.exp_bits;
    let max_e = (1 << f.exp_bits) - 2;
    let e = (center + r.random_range(-spread..=spread)).clamp(0, max_e) as u16;
    let m = r.random::<u16>() & ((1 << frac) - 1);
    (r.random::<bool>() as u16) << 15 | e << frac | m
}

/// The reference of one element: `op` exact in f64 (the inputs keep it so), rounded by search.
fn reference(f: &Format, x: f64) -> u64 {
    match f.table.round(x, Mode::N) {
        Some(b) => b as u64,
        None => u64::MAX, // NaN
    }
}

fn check(f: &Format, inst: &str, got: u64, want: u64, inputs: &[u64]) {
    let ok = got == want || (want == u64::MAX && nan16(got, f.exp_bits));
    assert!(ok, "{inst} {inputs:x?}: got {got:#06x}, want {want:#06x}");
}

#[test]
fn add_sub_mul_fma_round_to_nearest_even() {
    let mut r = rng(11);
    for f in formats() {
        let bias = (1 << (f.exp_bits - 1)) - 1;
        let ops: [Op; 4] = [
            ("add", 2, |v| v[0] + v[1]),
            ("sub", 2, |v| v[0] - v[1]),
            ("mul", 2, |v| v[0] * v[1]),
            ("fma.rn", 3, |v| v[0] * v[1] + v[2]),
        ];
        for (op, n, exact) in ops {
            // Exponents near 1.0 (and near the sub-normal range for f16) keep every exact
            // result inside f64 precision.
            let centers = [bias, 3, bias + 6];
            let cases: Vec<Vec<u64>> = (0..600)
                .map(|k| {
                    let c = centers[k % 3];
                    (0..n).map(|_| rand16(&mut r, &f, c, 6) as u64).collect()
                })
                .collect();
            let srcs = vec!["b16"; n];
            let args = ["%a0", "%a1", "%a2"][..n].join(", ");
            let inst = format!("{op}.{} %d, {args};", f.name);
            let out = run(&inst, "b16", &srcs, &cases);
            for (c, got) in cases.iter().zip(&out) {
                let v: Vec<f64> = c.iter().map(|&b| (f.to_f64)(b as u16)).collect();
                let x = exact(&v);
                // f64 gives an exact zero its IEEE sign, as the instruction must.
                let want = reference(&f, x);
                check(&f, &inst, *got, want, c);
            }
            // The x2 form computes each half on its own: element 0 in bits 0-15.
            let pairs: Vec<Vec<u64>> = cases
                .chunks(2)
                .filter(|p| p.len() == 2)
                .map(|p| (0..n).map(|k| p[0][k] | p[1][k] << 16).collect())
                .collect();
            let inst2 = format!("{op}.{}x2 %d, {args};", f.name);
            let srcs2 = vec!["b32"; n];
            let out2 = run(&inst2, "b32", &srcs2, &pairs);
            for (k, got) in out2.iter().enumerate() {
                assert_eq!(got & 0xffff, out[2 * k], "{inst2}: low half is element 0");
                assert_eq!(got >> 16, out[2 * k + 1], "{inst2}: high half is element 1");
            }
        }
    }
}

#[test]
fn ties_go_to_even() {
    // f16: 1 + 2^-11 is halfway between 1 and 1+2^-10 → 1 (even); 1+2^-10 + 2^-11 → 1+2^-9.
    let one = 0x3c00u64;
    let half_ulp = 0x1000u64; // 2^-11
    let out =
        run("add.f16 %d, %a0, %a1;", "b16", &["b16", "b16"], &[vec![one, half_ulp], vec![one + 1, half_ulp]]);
    assert_eq!(out, vec![one, one + 2]);
    // bf16: 1 + 2^-8 is halfway → 1; (1+2^-7) + 2^-8 → 1 + 2^-6.
    let one = 0x3f80u64;
    let half_ulp = 0x3b80u64; // 2^-8
    let out = run(
        "add.bf16 %d, %a0, %a1;",
        "b16",
        &["b16", "b16"],
        &[vec![one, half_ulp], vec![one + 1, half_ulp]],
    );
    assert_eq!(out, vec![one, one + 2]);
}

#[test]
fn ftz_sat_relu() {
    let sub = 0x0003u64; // f16 sub-normal
    let out = run("add.f16 %d, %a0, %a1;", "b16", &["b16", "b16"], &[vec![sub, 0]]);
    assert_eq!(out, vec![sub]);
    let out =
        run("add.ftz.f16 %d, %a0, %a1;", "b16", &["b16", "b16"], &[vec![sub, 0], vec![0x8000 | sub, 0x8000]]);
    assert_eq!(out, vec![0, 0x8000]);
    // A sub-normal product flushes under .ftz: 2^-14 * 2^-3 = 2^-17.
    let out = run("mul.ftz.f16 %d, %a0, %a1;", "b16", &["b16", "b16"], &[vec![0x0400, 0x3000]]);
    assert_eq!(out, vec![0]);
    let out = run("mul.f16 %d, %a0, %a1;", "b16", &["b16", "b16"], &[vec![0x0400, 0x3000]]);
    assert_eq!(out, vec![0x0080]);
    // .sat: [0, 1], NaN → +0.
    let (two, half_, m1, nan) = (0x4000u64, 0x3800u64, 0xbc00u64, 0x7e00u64);
    let out = run(
        "add.sat.f16 %d, %a0, %a1;",
        "b16",
        &["b16", "b16"],
        &[vec![two, half_], vec![half_, 0], vec![m1, half_], vec![nan, half_]],
    );
    assert_eq!(out, vec![0x3c00, half_, 0, 0]);
    let out = run(
        "fma.rn.sat.f16x2 %d, %a0, %a1, %a2;",
        "b32",
        &["b32"; 3],
        &[vec![two << 16 | half_, two << 16 | half_, 0]],
    );
    assert_eq!(out, vec![0x3c00 << 16 | 0x3400]);
    // .relu: negative → +0, NaN → canonical NaN.
    for (ty, one, m_one, nan) in [("f16", 0x3c00u64, 0xbc00u64, 0x7e01u64), ("bf16", 0x3f80, 0xbf80, 0x7fc1)]
    {
        let out = run(
            &format!("fma.rn.relu.{ty} %d, %a0, %a1, %a2;"),
            "b16",
            &["b16"; 3],
            &[vec![one, m_one, 0], vec![one, one, one], vec![nan, one, one]],
        );
        assert_eq!(out[0], 0, "{ty}");
        assert_eq!(out[2], 0x7fff, "{ty}");
        assert_ne!(out[1], 0);
    }
}

#[test]
fn neg_abs_min_max() {
    let x2 = |lo: u64, hi: u64| vec![lo | hi << 16];
    let out = run("neg.f16x2 %d, %a0;", "b32", &["b32"], &[x2(0x3c00, 0xc000)]);
    assert_eq!(out, vec![0xbc00 | 0x4000 << 16]);
    let out = run("abs.bf16x2 %d, %a0;", "b32", &["b32"], &[x2(0xbf80, 0x4000)]);
    assert_eq!(out, vec![0x3f80 | 0x4000 << 16]);
    let out = run("neg.ftz.f16 %d, %a0;", "b16", &["b16"], &[vec![0x0001]]);
    assert_eq!(out, vec![0x8000]);
    let out = run("abs.bf16 %d, %a0;", "b16", &["b16"], &[vec![0x8001]]);
    assert_eq!(out, vec![0x0001], "bf16 keeps sub-normals");
    for (ty, one, two, nan, canon) in
        [("f16", 0x3c00u64, 0x4000u64, 0x7e05u64, 0x7fffu64), ("bf16", 0x3f80, 0x4000, 0x7fc5, 0x7fff)]
    {
        let cases = vec![
            vec![one, two],
            vec![nan, two],
            vec![one, nan],
            vec![nan, nan],
            vec![0x8000, 0],
            vec![0, 0x8000],
            vec![one | 0x8000, one],
        ];
        let min = run(&format!("min.{ty} %d, %a0, %a1;"), "b16", &["b16", "b16"], &cases);
        assert_eq!(min, vec![one, two, one, canon, 0x8000, 0x8000, one | 0x8000], "min.{ty}");
        let max = run(&format!("max.{ty} %d, %a0, %a1;"), "b16", &["b16", "b16"], &cases);
        assert_eq!(max, vec![two, two, one, canon, 0, 0, one], "max.{ty}");
        let maxn = run(&format!("max.NaN.{ty} %d, %a0, %a1;"), "b16", &["b16", "b16"], &cases);
        assert_eq!(&maxn[..4], &[two, canon, canon, canon], "max.NaN.{ty}");
        let xs = run(
            &format!("max.xorsign.abs.{ty} %d, %a0, %a1;"),
            "b16",
            &["b16", "b16"],
            &[vec![two | 0x8000, one]],
        );
        assert_eq!(xs, vec![two | 0x8000], "max.xorsign.abs.{ty}");
        // x2: per element.
        let out = run(
            &format!("max.{ty}x2 %d, %a0, %a1;"),
            "b32",
            &["b32", "b32"],
            &[vec![one | two << 16, two | one << 16]],
        );
        assert_eq!(out, vec![two | two << 16]);
    }
}

#[test]
fn unsupported_half_forms_are_refused() {
    assert!(fp_common::refused("add.ftz.bf16 %d, %a0, %a0;", "b16", &["b16"]));
    assert!(fp_common::refused("add.rz.f16 %d, %a0, %a0;", "b16", &["b16"]));
    assert!(fp_common::refused("fma.f16 %d, %a0, %a0, %a0;", "b16", &["b16"]));
    assert!(fp_common::refused("fma.rn.oob.f16 %d, %a0, %a0, %a0;", "b16", &["b16"]));
}
