//! Special functions against PTX ISA 9.7.3.13-22 and 9.7.4.9-10: each `.approx` form within
//! its documented error bound of an f64 reference, the documented special-case tables, the
//! IEEE-rounded `rcp`/`sqrt` forms in every rounding mode, and the upper-word f64 forms.

mod fp_common;

use fp_common::{MODES, Table16, adjust32, adjust64, f32_in, f64_in, nan16, rng, run, ulps32};

fn run32(inst: &str, xs: &[f32]) -> Vec<f32> {
    let cases: Vec<Vec<u64>> = xs.iter().map(|x| vec![x.to_bits() as u64]).collect();
    run(&format!("{inst} %d, %a0;"), "f32", &["f32"], &cases)
        .into_iter()
        .map(|b| f32::from_bits(b as u32))
        .collect()
}

fn same(got: f32, want: f32) -> bool {
    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan())
}

const SPECIALS: [f32; 5] = [f32::NEG_INFINITY, -0.0, 0.0, f32::INFINITY, f32::NAN];

#[test]
fn special_case_tables() {
    let inf = f32::INFINITY;
    let nan = f32::NAN;
    // (instruction, results for -Inf, -0.0, +0.0, +Inf, NaN)
    let tables: [(&str, [f32; 5]); 9] = [
        ("ex2.approx.f32", [0.0, 1.0, 1.0, inf, nan]),
        ("ex2.approx.ftz.f32", [0.0, 1.0, 1.0, inf, nan]),
        ("lg2.approx.f32", [nan, -inf, -inf, inf, nan]),
        ("rcp.approx.f32", [-0.0, -inf, inf, 0.0, nan]),
        ("rcp.rn.f32", [-0.0, -inf, inf, 0.0, nan]),
        ("sqrt.approx.f32", [nan, -0.0, 0.0, inf, nan]),
        ("rsqrt.approx.f32", [nan, -inf, inf, 0.0, nan]),
        ("sin.approx.f32", [nan, -0.0, 0.0, nan, nan]),
        ("tanh.approx.f32", [-1.0, -0.0, 0.0, 1.0, nan]),
    ];
    for (inst, want) in tables {
        let got = run32(inst, &SPECIALS);
        for (k, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(same(*g, w), "{inst}({:?}) = {g:?}, want {w:?}", SPECIALS[k]);
        }
    }
    let cos = run32("cos.approx.f32", &SPECIALS);
    assert!(cos[0].is_nan() && cos[1] == 1.0 && cos[2] == 1.0 && cos[3].is_nan() && cos[4].is_nan());
    // Negative normal inputs.
    let neg = run32("lg2.approx.f32", &[-2.0]);
    assert!(neg[0].is_nan());
    assert!(run32("sqrt.rn.f32", &[-4.0])[0].is_nan());
    assert!(run32("rsqrt.approx.f32", &[-4.0])[0].is_nan());
    // Sub-normals: kept by default, flushed under .ftz.
    let sub = f32::from_bits(0x0000_1000);
    assert_eq!(run32("rsqrt.approx.ftz.f32", &[sub])[0], inf);
    assert!(run32("rsqrt.approx.f32", &[sub])[0].is_finite());
    assert_eq!(run32("tanh.approx.f32", &[sub])[0], sub, "tanh passes sub-normals through");
    assert_eq!(run32("ex2.approx.f32", &[-140.0])[0], 2f32.powi(-140));
    assert_eq!(run32("ex2.approx.ftz.f32", &[-140.0])[0].to_bits(), 0, "a sub-normal result flushes");
}

#[test]
fn approximations_are_within_the_documented_bounds() {
    let mut r = rng(21);
    let xs: Vec<f32> = (0..400).map(|_| f32_in(&mut r, 100, 134)).collect();
    // ex2: 2 ulp of the correctly rounded result, full range.
    let ex: Vec<f32> = (0..400).map(|k| (k as f32 - 200.0) * 0.637 + xs[k].fract()).collect();
    for inst in ["ex2.approx.f32", "ex2.approx.ftz.f32"] {
        for (x, got) in ex.iter().zip(run32(inst, &ex)) {
            let want = (*x as f64).exp2() as f32;
            let want = if inst.contains("ftz") && want.is_subnormal() { 0.0 } else { want };
            assert!(ulps32(got, want) <= 2, "{inst}({x}) = {got:e}, want {want:e}");
        }
    }
    // lg2: absolute 2^-22 on (0.5, 2), relative 2^-22 elsewhere.
    let pos: Vec<f32> = xs.iter().map(|x| x.abs()).collect();
    for (x, got) in pos.iter().zip(run32("lg2.approx.f32", &pos)) {
        let want = (*x as f64).log2();
        let err = (got as f64 - want).abs();
        let bound = if (0.5..2.0).contains(x) { 2f64.powi(-22) } else { want.abs() * 2f64.powi(-22) };
        assert!(err <= bound, "lg2({x}) = {got}, want {want}");
    }
    // rcp.approx: 1 ulp. sqrt.approx: relative 2^-23. rsqrt: relative 2^-22.9.
    for (x, got) in xs.iter().zip(run32("rcp.approx.ftz.f32", &xs)) {
        assert!(ulps32(got, 1.0 / x) <= 1, "rcp({x})");
    }
    for (x, got) in pos.iter().zip(run32("sqrt.approx.f32", &pos)) {
        let want = (*x as f64).sqrt();
        assert!((got as f64 - want).abs() <= want * 2f64.powi(-23), "sqrt({x})");
    }
    for (x, got) in pos.iter().zip(run32("rsqrt.approx.ftz.f32", &pos)) {
        let want = 1.0 / (*x as f64).sqrt();
        assert!((got as f64 - want).abs() <= want * 2f64.powf(-22.9), "rsqrt({x})");
    }
    // sin/cos: absolute 2^-20.5 on [-2π, 2π], 2^-14.7 on [-100π, 100π].
    let angles: Vec<f32> = (0..400).map(|k| (k as f32 - 200.0) * 0.0314 + xs[k].fract() * 0.01).collect();
    let wide: Vec<f32> = angles.iter().map(|a| a * 50.0).collect();
    for (inst, f) in [("sin.approx.f32", f64::sin as fn(f64) -> f64), ("cos.approx.ftz.f32", f64::cos)] {
        for (set, bound) in [(&angles, 2f64.powf(-20.5)), (&wide, 2f64.powf(-14.7))] {
            for (x, got) in set.iter().zip(run32(inst, set)) {
                assert!((got as f64 - f(*x as f64)).abs() <= bound, "{inst}({x})");
            }
        }
    }
    // tanh: relative 2^-11.
    for (x, got) in angles.iter().zip(run32("tanh.approx.f32", &angles)) {
        let want = (*x as f64).tanh();
        assert!((got as f64 - want).abs() <= want.abs() * 2f64.powi(-11), "tanh({x})");
    }
}

#[test]
fn rounded_rcp_and_sqrt_in_every_mode() {
    let mut r = rng(22);
    let xs: Vec<f32> = (0..300).map(|_| f32_in(&mut r, 1, 250)).collect();
    let pos: Vec<f32> = xs.iter().map(|x| x.abs()).collect();
    let xd: Vec<f64> = (0..300).map(|_| f64_in(&mut r, 10, 2000)).collect();
    let posd: Vec<f64> = xd.iter().map(|x| x.abs()).collect();
    for (mode, m) in MODES {
        for (x, got) in xs.iter().zip(run32(&format!("rcp.{m}.f32"), &xs)) {
            let q = 1.0 / x;
            let err = (-(q as f64)).mul_add(*x as f64, 1.0) * (*x as f64).signum();
            assert!(same(got, adjust32(q, err, mode)), "rcp.{m}({x:e}) = {got:e}");
        }
        for (x, got) in pos.iter().zip(run32(&format!("sqrt.{m}.f32"), &pos)) {
            let s = x.sqrt();
            let err = (-(s as f64)).mul_add(s as f64, *x as f64);
            assert!(same(got, adjust32(s, err, mode)), "sqrt.{m}({x:e}) = {got:e}");
        }
        let cases: Vec<Vec<u64>> = xd.iter().map(|x| vec![x.to_bits()]).collect();
        let out = run(&format!("rcp.{m}.f64 %d, %a0;"), "f64", &["f64"], &cases);
        for (x, got) in xd.iter().zip(out) {
            let q = 1.0 / x;
            assert_eq!(
                f64::from_bits(got),
                adjust64(q, (-q).mul_add(*x, 1.0) * x.signum(), mode),
                "rcp.{m}.f64({x:e})"
            );
        }
        let cases: Vec<Vec<u64>> = posd.iter().map(|x| vec![x.to_bits()]).collect();
        let out = run(&format!("sqrt.{m}.f64 %d, %a0;"), "f64", &["f64"], &cases);
        for (x, got) in posd.iter().zip(out) {
            let s = x.sqrt();
            assert_eq!(f64::from_bits(got), adjust64(s, (-s).mul_add(s, *x), mode), "sqrt.{m}.f64({x:e})");
        }
    }
}

#[test]
fn f64_upper_word_approximations() {
    // rcp.approx.ftz.f64 and rsqrt.approx.ftz.f64 read a[63:32] and zero d[31:0].
    let x = 3.0f64.to_bits() | 0xdead_beef; // low word ignored
    let cases = vec![
        vec![x],
        vec![(-0.0f64).to_bits()],
        vec![1u64 << 40], // a sub-normal upper word
        vec![f64::INFINITY.to_bits()],
        vec![f64::NAN.to_bits()],
    ];
    let out = run("rcp.approx.ftz.f64 %d, %a0;", "f64", &["f64"], &cases);
    assert_eq!(out[0] & 0xffff_ffff, 0);
    assert!((f64::from_bits(out[0]) - 1.0 / 3.0).abs() < 1e-6);
    assert_eq!(f64::from_bits(out[1]), f64::NEG_INFINITY);
    assert_eq!(f64::from_bits(out[2]), f64::INFINITY);
    assert_eq!(out[3], 0);
    assert_eq!(out[4], 0x7fff_ffff_0000_0000, "canonical NaN");
    let out = run("rsqrt.approx.ftz.f64 %d, %a0;", "f64", &["f64"], &cases);
    assert_eq!(out[0] & 0xffff_ffff, 0);
    assert!((f64::from_bits(out[0]) - 1.0 / 3f64.sqrt()).abs() < 1e-6);
    assert_eq!(f64::from_bits(out[1]), f64::NEG_INFINITY);
    assert_eq!(out[4], 0x7fff_ffff_0000_0000);
    let out = run(
        "rsqrt.approx.f64 %d, %a0;",
        "f64",
        &["f64"],
        &[vec![4.0f64.to_bits()], vec![(-0.0f64).to_bits()]],
    );
    assert_eq!(f64::from_bits(out[0]), 0.5);
    assert_eq!(f64::from_bits(out[1]), f64::NEG_INFINITY);
}

#[test]
fn half_ex2_and_tanh() {
    let (t16, tbf) = (Table16::f16(), Table16::bf16());
    let vals: Vec<f64> = (0..120).map(|k| (k as f64 - 60.0) * 0.31).collect();
    for (ty, table, exp_bits, bound, inst) in [
        ("f16", &t16, 5u32, 2f64.powf(-9.9), "ex2.approx.f16"),
        ("bf16", &tbf, 8, 2f64.powi(-7), "ex2.approx.ftz.bf16"),
    ] {
        let cases: Vec<Vec<u64>> =
            vals.iter().map(|&v| vec![table.round(v, fp_common::Mode::N).unwrap() as u64]).collect();
        let out = run(&format!("{inst} %d, %a0;"), "b16", &["b16"], &cases);
        let val = |b: u64| {
            if exp_bits == 5 {
                half::f16::from_bits(b as u16).to_f64()
            } else {
                f32::from_bits((b as u32) << 16) as f64
            }
        };
        for (c, got) in cases.iter().zip(&out) {
            let want = val(c[0]).exp2();
            let g = val(*got);
            assert!(
                g.is_infinite() && want > 6e4 || (g - want).abs() <= want * bound + 1e-7,
                "{inst}({}) = {g}, want {want}",
                val(c[0])
            );
        }
        // tanh: absolute 2^-10.987 (f16), 2^-8 (bf16).
        let tb = if exp_bits == 5 { 2f64.powf(-10.987) } else { 2f64.powi(-8) };
        let out = run(&format!("tanh.approx.{ty} %d, %a0;"), "b16", &["b16"], &cases);
        for (c, got) in cases.iter().zip(&out) {
            assert!((val(*got) - val(c[0]).tanh()).abs() <= tb, "tanh.{ty}");
        }
        // x2: element 0 in the low half.
        let pair = vec![vec![cases[70][0] | cases[10][0] << 16]];
        let out2 = run(&format!("{}x2 %d, %a0;", inst), "b32", &["b32"], &pair);
        let single =
            run(&format!("{inst} %d, %a0;"), "b16", &["b16"], &[cases[70].clone(), cases[10].clone()]);
        assert_eq!(out2[0], single[0] | single[1] << 16);
        // Specials: ex2(-inf) = +0, ex2(NaN) = NaN.
        let inf = table.round(f64::NEG_INFINITY, fp_common::Mode::N).unwrap() as u64;
        let out = run(&format!("{inst} %d, %a0;"), "b16", &["b16"], &[vec![inf], vec![0x7fff]]);
        assert_eq!(out[0], 0);
        assert!(nan16(out[1], exp_bits));
    }
}
