//! Comparison and selection (PTX ISA §9.7.7, §9.3.1): setp for every integer type and
//! comparison, ordered/unordered float comparisons with NaN, signed zeros and `.ftz`, the
//! packed half forms, bool-op combining with `!c`, `set`, `selp` and `slct`.

mod alu_util;

use alu_util::{INT_TYPES, ext, rng, rows, run_rows};
use rand::Rng;
use rand::rngs::StdRng;

/// `setp.{cmp}.{ty} %p|%q, a, b` for each row; returns (p, q).
fn setp(cmp: &str, reg: &str, rows: &[[u64; 4]]) -> Vec<(u64, u64)> {
    let decl = format!("  .reg .{reg} %a, %b;\n  .reg .pred %p, %q;\n  .reg .b32 %v, %w;");
    let body = format!(
        "  ld.global.{reg} %a, [%in];\n  ld.global.{reg} %b, [%in+8];\n  setp.{cmp} %p|%q, %a, %b;\n  selp.u32 %v, 1, 0, %p;\n  selp.u32 %w, 1, 0, %q;\n  st.global.v2.u32 [%out], {{%v, %w}};"
    );
    run_rows(&decl, &body, rows).iter().map(|g| (g[0] & 1, g[0] >> 32)).collect()
}

type IntCmp = fn(i128, i128) -> bool;

#[test]
fn setp_integer_comparisons() {
    for (k, &(ty, reg, bits, signed)) in INT_TYPES.iter().enumerate() {
        let mut input = rows(400 + k as u64, 256);
        for (i, r) in input.iter_mut().enumerate() {
            if i % 5 == 0 {
                r[1] = r[0];
            }
        }
        let mut ops: Vec<(&str, IntCmp)> = vec![
            ("eq", |a, b| a == b),
            ("ne", |a, b| a != b),
            ("lt", |a, b| a < b),
            ("le", |a, b| a <= b),
            ("gt", |a, b| a > b),
            ("ge", |a, b| a >= b),
        ];
        if !signed {
            ops.extend([
                ("lo", (|a, b| a < b) as IntCmp),
                ("ls", |a, b| a <= b),
                ("hi", |a, b| a > b),
                ("hs", |a, b| a >= b),
            ]);
        }
        for (cmp, f) in &ops {
            let got = setp(&format!("{cmp}.{ty}"), reg, &input);
            for (r, (p, q)) in input.iter().zip(got) {
                let t = f(ext(r[0], bits, signed), ext(r[1], bits, signed)) as u64;
                assert_eq!((p, q), (t, 1 - t), "setp.{cmp}.{ty} {:#x} {:#x}", r[0], r[1]);
            }
        }
        // .b types: eq and ne on the bits.
        let bty = format!("b{bits}");
        for (cmp, f) in &ops[..2] {
            let got = setp(&format!("{cmp}.{bty}"), reg, &input);
            for (r, (p, _)) in input.iter().zip(got) {
                assert_eq!(p, f(ext(r[0], bits, false), ext(r[1], bits, false)) as u64);
            }
        }
    }
}

/// Float comparisons: the ordered ones are false with a NaN input (`ne` included), the
/// unordered ones true; `num`/`nan` test for NaNs.
fn float_model(cmp: &str, a: f64, b: f64) -> bool {
    let u = a.is_nan() || b.is_nan();
    match cmp {
        "eq" => !u && a == b,
        "ne" => !u && a != b,
        "lt" => !u && a < b,
        "le" => !u && a <= b,
        "gt" => !u && a > b,
        "ge" => !u && a >= b,
        "equ" => u || a == b,
        "neu" => u || a != b,
        "ltu" => u || a < b,
        "leu" => u || a <= b,
        "gtu" => u || a > b,
        "geu" => u || a >= b,
        "num" => !u,
        "nan" => u,
        _ => unreachable!(),
    }
}

const FLOAT_CMPS: [&str; 14] =
    ["eq", "ne", "lt", "le", "gt", "ge", "equ", "neu", "ltu", "leu", "gtu", "geu", "num", "nan"];

fn f32_value(r: &mut StdRng) -> u32 {
    const SPECIAL: &[f32] = &[
        0.0,
        -0.0,
        1.0,
        -1.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
        1e-40,
        -1e-40,
        2.5,
    ];
    match r.random_range(0..4) {
        0 => SPECIAL[r.random_range(0..SPECIAL.len())].to_bits(),
        1 => r.random(),
        _ => (r.random_range(-4.0f32..4.0)).to_bits(),
    }
}

fn float_rows(seed: u64, n: usize, gen_: impl Fn(&mut StdRng) -> u64) -> Vec<[u64; 4]> {
    let mut r = rng(seed);
    (0..n)
        .map(|i| {
            let a = gen_(&mut r);
            let b = if i % 6 == 0 { a } else { gen_(&mut r) };
            [a, b, 0, 0]
        })
        .collect()
}

#[test]
fn setp_f32_and_f64_with_nans_zeros_and_ftz() {
    let input = float_rows(410, 400, |r| f32_value(r) as u64);
    let flush = |x: f32| if x.is_subnormal() { 0.0f32.copysign(x) } else { x };
    for cmp in FLOAT_CMPS {
        let got = setp(&format!("{cmp}.f32"), "f32", &input);
        let ftz = setp(&format!("{cmp}.ftz.f32"), "f32", &input);
        for ((r, (p, q)), (pf, _)) in input.iter().zip(got).zip(ftz) {
            let (a, b) = (f32::from_bits(r[0] as u32), f32::from_bits(r[1] as u32));
            let t = float_model(cmp, a as f64, b as f64) as u64;
            assert_eq!((p, q), (t, 1 - t), "setp.{cmp}.f32 {a:e} {b:e}");
            assert_eq!(
                pf,
                float_model(cmp, flush(a) as f64, flush(b) as f64) as u64,
                "setp.{cmp}.ftz.f32 {a:e} {b:e}"
            );
        }
    }
    let input = float_rows(420, 300, |r| (f32::from_bits(f32_value(r)) as f64).to_bits());
    for cmp in FLOAT_CMPS {
        for (r, (p, _)) in input.iter().zip(setp(&format!("{cmp}.f64"), "f64", &input)) {
            assert_eq!(
                p,
                float_model(cmp, f64::from_bits(r[0]), f64::from_bits(r[1])) as u64,
                "setp.{cmp}.f64"
            );
        }
    }
    // -0.0 == +0.0; a subnormal equals zero only with .ftz.
    let z = [[(-0.0f32).to_bits() as u64, 0, 0, 0], [1e-40f32.to_bits() as u64, 0, 0, 0]];
    assert_eq!(setp("eq.f32", "f32", &z), vec![(1, 0), (0, 1)]);
    assert_eq!(setp("eq.ftz.f32", "f32", &z), vec![(1, 0), (1, 0)]);
}

#[test]
fn setp_half_types_and_packed_pairs() {
    let h = |r: &mut StdRng| -> u64 {
        const S: &[u16] = &[0x0000, 0x8000, 0x3c00, 0xbc00, 0x7c00, 0xfc00, 0x7e00, 0x0001, 0x8001, 0x0400];
        if r.random_bool(0.4) { S[r.random_range(0..S.len())] as u64 } else { r.random::<u16>() as u64 }
    };
    let input = float_rows(430, 300, |r| h(r) | h(r) << 16);
    let f16 = |v: u64| half::f16::from_bits(v as u16).to_f64();
    let f16_ftz = |v: u64| {
        let x = half::f16::from_bits(v as u16);
        if x.is_normal() || x.is_nan() || x.is_infinite() { x.to_f64() } else { 0.0 }
    };
    let bf16 = |v: u64| half::bf16::from_bits(v as u16).to_f64();
    let kinds: [(&str, &dyn Fn(u64) -> f64); 3] = [("f16", &f16), ("ftz.f16", &f16_ftz), ("bf16", &bf16)];
    for cmp in FLOAT_CMPS {
        for (ty, conv) in kinds {
            let got = setp(&format!("{cmp}.{ty}"), "b16", &input);
            for (r, (p, q)) in input.iter().zip(got) {
                let t = float_model(cmp, conv(r[0]), conv(r[1])) as u64;
                assert_eq!((p, q), (t, 1 - t), "setp.{cmp}.{ty} {:#x} {:#x}", r[0] as u16, r[1] as u16);
            }
            let got = setp(&format!("{cmp}.{ty}x2"), "b32", &input);
            for (r, (p, q)) in input.iter().zip(got) {
                let lo = float_model(cmp, conv(r[0]), conv(r[1])) as u64;
                let hi = float_model(cmp, conv(r[0] >> 16), conv(r[1] >> 16)) as u64;
                assert_eq!((p, q), (lo, hi), "setp.{cmp}.{ty}x2 {:#x} {:#x}", r[0], r[1]);
            }
        }
    }
}

/// `setp.CmpOp.BoolOp p|q, a, b, {!}c`: `p = t op c`, `q = !t op c`.
#[test]
fn setp_combines_with_a_predicate() {
    let input: Vec<[u64; 4]> = (0..16).map(|k| [k & 3, k >> 2 & 1, k >> 3, 0]).collect();
    for bop in ["and", "or", "xor"] {
        for neg in [false, true] {
            let decl = "  .reg .b32 %a, %b, %c, %v, %w;\n  .reg .pred %p, %q, %pc;";
            let body = format!(
                "  ld.global.u32 %a, [%in];\n  ld.global.u32 %b, [%in+8];\n  ld.global.u32 %c, [%in+16];\n  setp.ne.u32 %pc, %c, 0;
  setp.lt.{bop}.s32 %p|%q, %a, %b, {}%pc;\n  selp.u32 %v, 1, 0, %p;\n  selp.u32 %w, 1, 0, %q;\n  st.global.v2.u32 [%out], {{%v, %w}};",
                if neg { "!" } else { "" }
            );
            for (r, g) in input.iter().zip(run_rows(decl, &body, &input)) {
                let t = r[0] < r[1];
                let c = (r[2] != 0) != neg;
                let f = |x: bool| match bop {
                    "and" => x & c,
                    "or" => x | c,
                    _ => x ^ c,
                };
                assert_eq!(g[0], f(t) as u64 | (f(!t) as u64) << 32, "{bop} neg={neg} {r:?}");
            }
        }
    }
}

/// `set`: all ones or 1.0f for true, 0 for false, optionally combined with `c`.
#[test]
fn set_writes_masks_or_one_point_zero() {
    let input = float_rows(440, 200, |r| f32_value(r) as u64);
    let decl = "  .reg .f32 %a, %b;\n  .reg .b32 %d, %e;\n  .reg .f32 %f;\n  .reg .pred %pc;";
    let body = "  ld.global.f32 %a, [%in];\n  ld.global.f32 %b, [%in+8];\n  set.ltu.u32.f32 %d, %a, %b;\n  set.gt.f32.f32 %f, %a, %b;
  setp.num.f32 %pc, %a, %a;\n  set.ge.or.s32.f32 %e, %a, %b, !%pc;
  st.global.u32 [%out], %d;\n  st.global.f32 [%out+8], %f;\n  st.global.u32 [%out+16], %e;";
    for (r, g) in input.iter().zip(run_rows(decl, body, &input)) {
        let (a, b) = (f32::from_bits(r[0] as u32) as f64, f32::from_bits(r[1] as u32) as f64);
        assert_eq!(g[0], if float_model("ltu", a, b) { 0xffff_ffff } else { 0 });
        assert_eq!(g[1], if float_model("gt", a, b) { 1f32.to_bits() as u64 } else { 0 });
        assert_eq!(g[2], if float_model("ge", a, b) || a.is_nan() { 0xffff_ffff } else { 0 });
    }
    let input = rows(441, 200);
    let decl = "  .reg .b32 %a, %b, %d;";
    let body = "  ld.global.u32 %a, [%in];\n  ld.global.u32 %b, [%in+8];\n  set.hi.u32.u32 %d, %a, %b;\n  st.global.u32 [%out], %d;";
    for (r, g) in input.iter().zip(run_rows(decl, body, &input)) {
        assert_eq!(g[0], if r[0] as u32 > r[1] as u32 { 0xffff_ffff } else { 0 });
    }
}

#[test]
fn selp_picks_a_when_c_is_true() {
    let input = rows(450, 200);
    for (ty, reg, w) in
        [("b16", "b16", 16), ("u32", "b32", 32), ("s64", "b64", 64), ("f32", "f32", 32), ("f64", "f64", 64)]
    {
        let decl = format!("  .reg .{reg} %a, %b, %d, %e;\n  .reg .b32 %c;\n  .reg .pred %p;");
        let body = format!(
            "  ld.global.{reg} %a, [%in];\n  ld.global.{reg} %b, [%in+8];\n  ld.global.u32 %c, [%in+16];\n  setp.ne.u32 %p, %c, 0;
  selp.{ty} %d, %a, %b, %p;\n  selp.{ty} %e, %a, %b, !%p;\n  st.global.{reg} [%out], %d;\n  st.global.{reg} [%out+8], %e;"
        );
        let m = alu_util::trunc(-1, w);
        for (r, g) in input.iter().zip(run_rows(&decl, &body, &input)) {
            let (a, b) = (r[0] & m, r[1] & m);
            let c = r[2] as u32 != 0;
            assert_eq!(g[..2], if c { [a, b] } else { [b, a] }, "selp.{ty}");
        }
    }
    // A float literal is converted to the type.
    let decl = "  .reg .f32 %d;\n  .reg .pred %p;\n  .reg .b32 %c;";
    let body = "  ld.global.u32 %c, [%in];\n  setp.ne.u32 %p, %c, 0;\n  selp.f32 %d, 0d3FF8000000000000, 0f40000000, %p;\n  st.global.f32 [%out], %d;";
    let got = run_rows(decl, body, &[[1, 0, 0, 0], [0, 0, 0, 0]]);
    assert_eq!([got[0][0], got[1][0]], [1.5f32.to_bits() as u64, 2f32.to_bits() as u64]);
}

/// `slct`: `c >= 0 ? a : b`; `-0.0` counts as >= 0, NaN does not, `.ftz` flushes a
/// subnormal `c`.
#[test]
fn slct_selects_on_the_sign_of_c() {
    let input = rows(460, 200);
    let decl = "  .reg .b32 %a, %b, %c, %d;\n  .reg .f32 %cf;";
    let body = "  ld.global.u32 %a, [%in];\n  ld.global.u32 %b, [%in+8];\n  ld.global.s32 %c, [%in+16];\n  slct.u32.s32 %d, %a, %b, %c;\n  st.global.u32 [%out], %d;";
    for (r, g) in input.iter().zip(run_rows(decl, body, &input)) {
        assert_eq!(g[0], if r[2] as i32 >= 0 { r[0] & 0xffff_ffff } else { r[1] & 0xffff_ffff });
    }
    let cs = [0.0f32, -0.0, 1.0, -1.0, f32::NAN, -1e-40, 1e-40, f32::NEG_INFINITY];
    let input: Vec<[u64; 4]> = cs.iter().map(|c| [11, 22, c.to_bits() as u64, 0]).collect();
    let body = "  ld.global.u32 %a, [%in];\n  ld.global.u32 %b, [%in+8];\n  ld.global.f32 %cf, [%in+16];\n  slct.b32.f32 %d, %a, %b, %cf;\n  slct.ftz.b32.f32 %c, %a, %b, %cf;
  st.global.u32 [%out], %d;\n  st.global.u32 [%out+8], %c;";
    let got = run_rows(decl, body, &input);
    let plain: Vec<u64> = got.iter().map(|g| g[0]).collect();
    let ftz: Vec<u64> = got.iter().map(|g| g[1]).collect();
    assert_eq!(plain, vec![11, 11, 11, 22, 22, 22, 11, 22]);
    assert_eq!(ftz, vec![11, 11, 11, 22, 22, 11, 11, 22]);
}
