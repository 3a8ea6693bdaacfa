//! f32/f64 arithmetic against PTX ISA 9.7.3: rounding modifiers (IEEE directed rounding),
//! `.ftz`, `.sat`, the NaN and signed-zero rules of `min`/`max`, `abs`, `neg`, `copysign`,
//! `testp`, and the three kinds of `div`.

mod fp_common;

use fp_common::{
    MODES, Mode, adjust32, adjust64, f32_in, f32_short, f64_in, f64_to_f32, refused, rng, run, ulps32,
};
use rand::Rng;

fn bits32(cases: &[Vec<f32>]) -> Vec<Vec<u64>> {
    cases.iter().map(|c| c.iter().map(|x| x.to_bits() as u64).collect()).collect()
}

fn f32s(out: &[u64]) -> Vec<f32> {
    out.iter().map(|&b| f32::from_bits(b as u32)).collect()
}

fn same32(got: f32, want: f32) -> bool {
    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan())
}

/// Inputs whose exact sum/product stays exact in f64, including sub-normals, with the
/// f64-exact reference of `op`.
fn check_f32_binary(name: &str, op: fn(f64, f64) -> f64, seed: u64) {
    let mut r = rng(seed);
    let mut cases = Vec::new();
    for _ in 0..300 {
        let a = f32_in(&mut r, 100, 150);
        // Exponent within 25 of a's so a sum is exact in f64.
        let ea = (a.to_bits() >> 23 & 0xff) as i32;
        let eb = (ea + r.random_range(-25..=25)).clamp(1, 254) as u32;
        let b = f32_in(&mut r, eb, eb);
        cases.push(vec![a, b]);
    }
    for _ in 0..60 {
        cases.push(vec![f32_in(&mut r, 0, 2), f32_in(&mut r, 0, 2)]); // sub-normals
        cases.push(vec![f32_in(&mut r, 250, 254), f32_in(&mut r, 250, 254)]); // overflow
    }
    cases.push(vec![1.5, -1.5]); // exact zero: -0 under .rm
    cases.push(vec![-0.0, 0.0]);
    for (mode, m) in MODES {
        let out =
            f32s(&run(&format!("{name}.{m}.f32 %d, %a0, %a1;"), "f32", &["f32", "f32"], &bits32(&cases)));
        for (c, got) in cases.iter().zip(out) {
            let x = op(c[0] as f64, c[1] as f64);
            let mut want = f64_to_f32(x, mode);
            if x == 0.0 && name != "mul" {
                // IEEE 754 §6.3: an exact zero sum of opposite signs is +0, or -0 rounding down.
                let opposite = c[0].is_sign_negative() != (c[1].is_sign_negative() ^ (name == "sub"));
                if opposite {
                    want = if mode == Mode::M { -0.0 } else { 0.0 };
                }
            }
            assert!(
                same32(got, want),
                "{name}.{m} {:e} {:e}: got {got:e} ({:#x}), want {want:e}",
                c[0],
                c[1],
                got.to_bits()
            );
        }
    }
}

#[test]
fn add_sub_mul_f32_in_every_rounding_mode() {
    check_f32_binary("add", |a, b| a + b, 1);
    check_f32_binary("sub", |a, b| a - b, 2);
    check_f32_binary("mul", |a, b| a * b, 3);
}

#[test]
fn fma_f32_rounds_once_in_every_mode() {
    let mut r = rng(4);
    let mut cases = Vec::new();
    for _ in 0..300 {
        let (a, b) = (f32_in(&mut r, 110, 140), f32_in(&mut r, 110, 140));
        // c near the product, so a*b + c is exact in f64 and rounding matters.
        let pe = ((a as f64 * b as f64).abs().log2().floor() as i32 + 127).clamp(1, 254);
        let c = f32_in(&mut r, (pe - 3).max(1) as u32, (pe + 3).min(254) as u32);
        cases.push(vec![a, b, c]);
    }
    // Sticky cases: the product is exactly representable, c far below its last bit.
    for &(a, b, c) in &[
        (3.0f32, 5.0, 1e-30f32),
        (3.0, 5.0, -1e-30),
        (-7.0, 9.0, 1e-25),
        (-7.0, 9.0, -1e-25),
        (1.0, 1.0, -1.0),
    ] {
        cases.push(vec![a, b, c]);
    }
    for (mode, m) in MODES {
        for op in ["fma", "mad"] {
            let out =
                f32s(&run(&format!("{op}.{m}.f32 %d, %a0, %a1, %a2;"), "f32", &["f32"; 3], &bits32(&cases)));
            for (c, got) in cases.iter().zip(out) {
                let p = c[0] as f64 * c[1] as f64;
                let s = p + c[2] as f64;
                let want = if p.abs() > 1e20 * (c[2] as f64).abs() {
                    // c only decides the direction.
                    adjust32(p as f32, c[2] as f64, mode)
                } else if s == 0.0 {
                    if mode == Mode::M { -0.0 } else { 0.0 }
                } else {
                    f64_to_f32(s, mode)
                };
                assert!(same32(got, want), "{op}.{m} {c:?}: got {got:e}, want {want:e}");
            }
        }
    }
}

#[test]
fn f64_directed_rounding_matches_the_exact_error() {
    let mut r = rng(5);
    let cases: Vec<Vec<f64>> =
        (0..300).map(|_| vec![f64_in(&mut r, 1000, 1050), f64_in(&mut r, 1000, 1050)]).collect();
    let bits: Vec<Vec<u64>> = cases.iter().map(|c| c.iter().map(|x| x.to_bits()).collect()).collect();
    for (mode, m) in MODES {
        let add = run(&format!("add.{m}.f64 %d, %a0, %a1;"), "f64", &["f64", "f64"], &bits);
        let mul = run(&format!("mul.{m}.f64 %d, %a0, %a1;"), "f64", &["f64", "f64"], &bits);
        let div = run(&format!("div.{m}.f64 %d, %a0, %a1;"), "f64", &["f64", "f64"], &bits);
        for (k, c) in cases.iter().enumerate() {
            let (a, b) = (c[0], c[1]);
            let s = a + b;
            let t = (a - (s - (s - a))) + (b - (s - a));
            assert_eq!(f64::from_bits(add[k]), adjust64(s, t, mode), "add.{m} {a:e} {b:e}");
            let p = a * b;
            assert_eq!(f64::from_bits(mul[k]), adjust64(p, a.mul_add(b, -p), mode), "mul.{m} {a:e} {b:e}");
            let q = a / b;
            let rem = (-q).mul_add(b, a) * b.signum();
            assert_eq!(f64::from_bits(div[k]), adjust64(q, rem, mode), "div.{m} {a:e} {b:e}");
        }
    }
    // fma.f64 with an exact product (26-bit significands): only the sum rounds.
    let short =
        |r: &mut rand::rngs::StdRng| f64::from_bits(f64_in(r, 1000, 1040).to_bits() & !((1 << 27) - 1));
    let cases: Vec<Vec<f64>> =
        (0..200).map(|_| vec![short(&mut r), short(&mut r), f64_in(&mut r, 990, 1050)]).collect();
    let bits: Vec<Vec<u64>> = cases.iter().map(|c| c.iter().map(|x| x.to_bits()).collect()).collect();
    for (mode, m) in MODES {
        let out = run(&format!("fma.{m}.f64 %d, %a0, %a1, %a2;"), "f64", &["f64"; 3], &bits);
        for (c, got) in cases.iter().zip(out) {
            let p = c[0] * c[1];
            let s = p + c[2];
            let t = (p - (s - (s - p))) + (c[2] - (s - p));
            assert_eq!(f64::from_bits(got), adjust64(s, t, mode), "fma.{m} {c:?}");
        }
    }
}

#[test]
fn div_f32_rounded_approx_and_full() {
    let mut r = rng(6);
    let cases: Vec<Vec<f32>> =
        (0..300).map(|_| vec![f32_in(&mut r, 60, 190), f32_in(&mut r, 60, 190)]).collect();
    for (mode, m) in MODES {
        let out = f32s(&run(&format!("div.{m}.f32 %d, %a0, %a1;"), "f32", &["f32", "f32"], &bits32(&cases)));
        for (c, got) in cases.iter().zip(out) {
            let q = c[0] / c[1];
            let rem = (-(q as f64)).mul_add(c[1] as f64, c[0] as f64) * (c[1] as f64).signum();
            assert!(same32(got, adjust32(q, rem, mode)), "div.{m} {c:?}: {got:e}");
        }
    }
    for form in ["div.approx.f32", "div.full.f32", "div.approx.ftz.f32", "div.full.ftz.f32"] {
        let out = f32s(&run(&format!("{form} %d, %a0, %a1;"), "f32", &["f32", "f32"], &bits32(&cases)));
        for (c, got) in cases.iter().zip(out) {
            assert!(ulps32(got, c[0] / c[1]) <= 2, "{form} {c:?}: {got:e}");
        }
    }
    // div.approx: for 2^126 < |b| < 2^128 the result is a signed zero, or NaN for infinite a.
    let big = f32::from_bits(0x7f00_0000); // 2^127
    let out = f32s(&run(
        "div.approx.f32 %d, %a0, %a1;",
        "f32",
        &["f32", "f32"],
        &bits32(&[vec![3.0, big], vec![-3.0, big], vec![f32::INFINITY, big]]),
    ));
    assert_eq!(out[0].to_bits(), 0);
    assert_eq!(out[1].to_bits(), 0x8000_0000);
    assert!(out[2].is_nan());
}

#[test]
fn ftz_flushes_inputs_and_results_and_sat_clamps() {
    let sub = f32::from_bits(0x0000_0400); // a sub-normal
    let tiny = f32::from_bits(0x0080_0000); // the smallest normal
    let cases = bits32(&[vec![sub, 0.0], vec![-sub, -0.0], vec![tiny * 1.5, -tiny], vec![1.0, 2.0]]);
    let plain = f32s(&run("add.f32 %d, %a0, %a1;", "f32", &["f32", "f32"], &cases));
    let ftz = f32s(&run("add.ftz.f32 %d, %a0, %a1;", "f32", &["f32", "f32"], &cases));
    assert_eq!(plain[0], sub);
    assert_eq!(ftz[0].to_bits(), 0);
    assert_eq!(ftz[1].to_bits(), 0x8000_0000);
    assert!(plain[2].is_subnormal());
    assert_eq!(ftz[2].to_bits(), 0, "a sub-normal result flushes to a zero of its sign");
    assert_eq!(ftz[3], 3.0);
    // mul.ftz of a sub-normal input is a signed zero.
    let out = f32s(&run("mul.ftz.f32 %d, %a0, %a1;", "f32", &["f32", "f32"], &bits32(&[vec![-sub, 1e30]])));
    assert_eq!(out[0].to_bits(), 0x8000_0000);
    // .sat: [0, 1], NaN to +0.
    let nan = f32::NAN;
    let cases = bits32(&[
        vec![0.25, 0.5],
        vec![0.75, 0.5],
        vec![-1.0, 0.5],
        vec![nan, 1.0],
        vec![f32::INFINITY, f32::NEG_INFINITY],
    ]);
    let out = f32s(&run("add.sat.f32 %d, %a0, %a1;", "f32", &["f32", "f32"], &cases));
    assert_eq!(
        out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        vec![0.75f32.to_bits(), 0x3f80_0000, 0, 0, 0]
    );
    let out = f32s(&run(
        "fma.rn.sat.f32 %d, %a0, %a1, %a2;",
        "f32",
        &["f32"; 3],
        &bits32(&[vec![2.0, 3.0, -5.5], vec![2.0, 3.0, 0.0]]),
    ));
    assert_eq!(out, vec![0.5, 1.0]);
}

#[test]
fn min_max_nan_and_signed_zero_rules() {
    let nan = f32::from_bits(0x7fc0_1234);
    let cases = bits32(&[
        vec![1.0, 2.0],
        vec![nan, 2.0],
        vec![-3.0, nan],
        vec![nan, nan],
        vec![-0.0, 0.0],
        vec![0.0, -0.0],
        vec![-5.0, 4.0],
    ]);
    let run2 = |i: &str| f32s(&run(&format!("{i} %d, %a0, %a1;"), "f32", &["f32", "f32"], &cases));
    let (min, max) = (run2("min.f32"), run2("max.f32"));
    assert_eq!(&min[..3], &[1.0, 2.0, -3.0]);
    assert_eq!(&max[..3], &[2.0, 2.0, -3.0]);
    assert_eq!(min[3].to_bits(), 0x7fff_ffff, "two NaNs give the canonical NaN");
    assert_eq!([min[4].to_bits(), min[5].to_bits()], [0x8000_0000; 2], "-0 < +0");
    assert_eq!([max[4].to_bits(), max[5].to_bits()], [0; 2]);
    let (minn, maxn) = (run2("min.NaN.f32"), run2("max.NaN.f32"));
    assert_eq!(minn[0], 1.0);
    assert!(minn[1].is_nan() && minn[2].is_nan() && maxn[1].is_nan() && maxn[2].is_nan());
    assert_eq!(maxn[6], 4.0);
    // .xorsign.abs: the extreme of |a|, |b| with sign(a) ^ sign(b).
    let xs = run2("max.xorsign.abs.f32");
    assert_eq!(xs[6], -5.0);
    assert_eq!(xs[0], 2.0);
    assert_eq!(run2("min.xorsign.abs.f32")[6], -4.0);
    // Three inputs.
    let out = f32s(&run("max.f32 %d, %a0, %a1, %a2;", "f32", &["f32"; 3], &bits32(&[vec![1.0, 7.0, -9.0]])));
    assert_eq!(out, vec![7.0]);
    let out =
        f32s(&run("max.abs.f32 %d, %a0, %a1, %a2;", "f32", &["f32"; 3], &bits32(&[vec![1.0, 7.0, -9.0]])));
    assert_eq!(out, vec![9.0]);
    // f64 and random inputs against the ordered comparison.
    let mut r = rng(7);
    let cases: Vec<Vec<u64>> = (0..200)
        .map(|_| vec![f64_in(&mut r, 900, 1100).to_bits(), f64_in(&mut r, 900, 1100).to_bits()])
        .collect();
    let out = run("min.f64 %d, %a0, %a1;", "f64", &["f64", "f64"], &cases);
    for (c, got) in cases.iter().zip(out) {
        assert_eq!(f64::from_bits(got), f64::from_bits(c[0]).min(f64::from_bits(c[1])));
    }
}

#[test]
fn abs_neg_copysign_testp() {
    let sub = f32::from_bits(0x8000_0001);
    let cases = bits32(&[vec![-2.5], vec![3.0], vec![sub], vec![-0.0]]);
    let abs = f32s(&run("abs.f32 %d, %a0;", "f32", &["f32"], &cases));
    assert_eq!(abs.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), vec![0x4020_0000, 0x4040_0000, 1, 0]);
    let neg = f32s(&run("neg.ftz.f32 %d, %a0;", "f32", &["f32"], &cases));
    assert_eq!(neg.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), vec![0x4020_0000, 0xc040_0000, 0, 0]);
    let d = run("neg.f64 %d, %a0;", "f64", &["f64"], &[vec![1.5f64.to_bits()]]);
    assert_eq!(f64::from_bits(d[0]), -1.5);
    let d = run("abs.f64 %d, %a0;", "f64", &["f64"], &[vec![(-1.5f64).to_bits()]]);
    assert_eq!(f64::from_bits(d[0]), 1.5);
    // copysign d, a, b: the sign of a on b.
    let out = f32s(&run(
        "copysign.f32 %d, %a0, %a1;",
        "f32",
        &["f32", "f32"],
        &bits32(&[vec![-1.0, 2.0], vec![1.0, -3.0]]),
    ));
    assert_eq!(out, vec![-2.0, 3.0]);
    let out = run(
        "copysign.f64 %d, %a0, %a1;",
        "f64",
        &["f64", "f64"],
        &[vec![(-1.0f64).to_bits(), 4.0f64.to_bits()]],
    );
    assert_eq!(f64::from_bits(out[0]), -4.0);
    // testp: zeros are normal.
    let vals = [0.0f32, -0.0, 1.0, f32::from_bits(5), f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
    let cases = bits32(&vals.iter().map(|&v| vec![v]).collect::<Vec<_>>());
    let expect: [(&str, [u64; 7]); 6] = [
        ("finite", [1, 1, 1, 1, 0, 0, 0]),
        ("infinite", [0, 0, 0, 0, 1, 1, 0]),
        ("number", [1, 1, 1, 1, 1, 1, 0]),
        ("notanumber", [0, 0, 0, 0, 0, 0, 1]),
        ("normal", [1, 1, 1, 0, 0, 0, 0]),
        ("subnormal", [0, 0, 0, 1, 0, 0, 0]),
    ];
    for (op, want) in expect {
        assert_eq!(
            run(&format!("testp.{op}.f32 %d, %a0;"), "pred", &["f32"], &cases),
            want,
            "testp.{op}.f32"
        );
        let wide: Vec<Vec<u64>> =
            vals.iter().map(|&v| vec![if v.is_subnormal() { 5u64 } else { (v as f64).to_bits() }]).collect();
        assert_eq!(run(&format!("testp.{op}.f64 %d, %a0;"), "pred", &["f64"], &wide), want, "testp.{op}.f64");
    }
}

#[test]
fn literals_take_the_instruction_type() {
    // 0d literal on an f32 instruction, 0f literal on an f64 one.
    let out = f32s(&run("add.f32 %d, %a0, 0d3FF8000000000000;", "f32", &["f32"], &bits32(&[vec![1.0]])));
    assert_eq!(out, vec![2.5]);
    let out = run("mul.f64 %d, %a0, 0f40000000;", "f64", &["f64"], &[vec![1.25f64.to_bits()]]);
    assert_eq!(f64::from_bits(out[0]), 2.5);
    let out =
        f32s(&run("fma.rm.f32 %d, %a0, 0f3BBB989D, 0f3F000000;", "f32", &["f32"], &bits32(&[vec![3.0]])));
    assert_eq!(out[0], f64_to_f32(3.0 * f32::from_bits(0x3BBB989D) as f64 + 0.5, Mode::M));
}

#[test]
fn unsupported_forms_are_refused() {
    assert!(refused("fma.f32 %d, %a0, %a0, %a0;", "f32", &["f32"]));
    assert!(refused("div.f32 %d, %a0, %a0;", "f32", &["f32"]));
    assert!(refused("add.ftz.f64 %d, %a0, %a0;", "f64", &["f64"]));
    assert!(refused("min.NaN.f64 %d, %a0, %a0;", "f64", &["f64"]));
    // exact f64 round trip of random values through mad.rn.f64
    let mut r = rng(8);
    let x = f32_short(&mut r, 120, 130, 10);
    let out = run("mad.rn.f64 %d, %a0, %a0, %a0;", "f64", &["f64"], &[vec![(x as f64).to_bits()]]);
    assert_eq!(f64::from_bits(out[0]), (x as f64).mul_add(x as f64, x as f64));
}
