//! `cvt` against PTX ISA 9.7.9.21: integer widening/narrowing and `.sat`; float to integer
//! with the four integer roundings, clamping and the NaN rule; integer to float and float
//! narrowing in every rounding mode (ties to even, sub-normals, overflow); `.relu`,
//! `.satfinite`, `.sat`, `.ftz`; rounding to integral values; and the f16x2/bf16x2 packing,
//! where the value from `a` goes to the upper half.

mod fp_common;

use fp_common::{MODES, Mode, Table16, f32_in, f64_in, f64_to_f32, refused, rng, run};
use rand::Rng;

/// An integer rounding modifier and its host equivalent.
type Named<T> = (&'static str, fn(T) -> T);

fn ints(r: &mut rand::rngs::StdRng, n: usize) -> Vec<u64> {
    (0..n)
        .map(|k| match k % 4 {
            0 => r.random::<u64>(),
            1 => r.random::<u32>() as u64,
            2 => r.random::<u16>() as u64 | if r.random() { 0xffff_ffff_ffff_0000 } else { 0 },
            _ => r.random_range(0..300u64).wrapping_sub(150),
        })
        .collect()
}

fn int_info(t: &str) -> (u32, bool) {
    (t[1..].parse().unwrap(), t.starts_with('s'))
}

fn reg_of(t: &str) -> &'static str {
    match int_info(t).0 {
        8 | 16 => "b16",
        32 => "b32",
        _ => "b64",
    }
}

fn value_of(v: u64, t: &str) -> i128 {
    let (bits, signed) = int_info(t);
    let sh = 64 - bits;
    if signed { ((v << sh) as i64 >> sh) as i128 } else { ((v << sh) >> sh) as i128 }
}

#[test]
fn integer_conversions_extend_truncate_and_saturate() {
    let mut r = rng(31);
    let src = ints(&mut r, 200);
    let types = ["u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64"];
    for d in types {
        for a in types {
            let cases: Vec<Vec<u64>> = src.iter().map(|&v| vec![v]).collect();
            let (db, ds) = int_info(d);
            // Destination registers of 32 bits at least, to see the sign extension.
            let dreg = if db <= 32 { "b32" } else { "b64" };
            let out = run(&format!("cvt.{d}.{a} %d, %a0;"), dreg, &[reg_of(a)], &cases);
            let sat_ok = int_info(a).1 != ds || int_info(a).0 > db;
            let sat = if sat_ok {
                run(&format!("cvt.sat.{d}.{a} %d, %a0;"), dreg, &[reg_of(a)], &cases)
            } else {
                vec![]
            };
            for (k, &v) in src.iter().enumerate() {
                let x = value_of(v, a);
                let trunc = (x as u64) & (u64::MAX >> (64 - db));
                let widen = |t: u64| {
                    if ds && db < 32 {
                        (((t << (64 - db)) as i64 >> (64 - db)) as u64) & 0xffff_ffff
                    } else {
                        t
                    }
                };
                assert_eq!(out[k], widen(trunc), "cvt.{d}.{a} {v:#x}");
                if sat_ok {
                    let (lo, hi) = if ds {
                        (-(1i128 << (db - 1)), (1i128 << (db - 1)) - 1)
                    } else {
                        (0, (1i128 << db) - 1)
                    };
                    let c = x.clamp(lo, hi);
                    assert_eq!(sat[k], widen((c as u64) & (u64::MAX >> (64 - db))), "cvt.sat.{d}.{a} {v:#x}");
                }
            }
        }
    }
}

#[test]
fn float_to_integer_rounds_clamps_and_maps_nan() {
    let mut r = rng(32);
    let mut xs: Vec<f64> = (0..150).map(|_| f64_in(&mut r, 1000, 1090)).collect();
    xs.extend([
        0.5,
        1.5,
        2.5,
        -0.5,
        -1.5,
        -2.5,
        1e30,
        -1e30,
        f64::INFINITY,
        f64::NEG_INFINITY,
        4294967295.7,
        -2147483648.6,
    ]);
    xs.extend((0..50).map(|k| (k as f64 - 25.0) * 0.25));
    let irnd: [Named<f64>; 4] =
        [("rni", f64::round_ties_even), ("rzi", f64::trunc), ("rmi", f64::floor), ("rpi", f64::ceil)];
    for src in ["f32", "f64"] {
        let cases: Vec<Vec<u64>> = xs
            .iter()
            .map(|&x| vec![if src == "f32" { (x as f32).to_bits() as u64 } else { x.to_bits() }])
            .chain([vec![if src == "f32" { 0x7fc0_0000 } else { f64::NAN.to_bits() }]])
            .collect();
        for d in ["s32", "u32", "s64", "u64", "s16", "u8"] {
            let (db, ds) = int_info(d);
            let dreg = if db <= 32 { "b32" } else { "b64" };
            for (m, f) in irnd {
                let out = run(&format!("cvt.{m}.{d}.{src} %d, %a0;"), dreg, &[src], &cases);
                for (c, got) in cases.iter().zip(&out) {
                    let x =
                        if src == "f32" { f32::from_bits(c[0] as u32) as f64 } else { f64::from_bits(c[0]) };
                    let (lo, hi) = if ds {
                        (-(1i128 << (db - 1)), (1i128 << (db - 1)) - 1)
                    } else {
                        (0, (1i128 << db) - 1)
                    };
                    let v: i128 = if x.is_nan() {
                        // Integer Notes: 0, unless the source is f64 or the destination 64-bit.
                        if src == "f64" || db == 64 {
                            if ds { -(1i128 << (db - 1)) } else { 1i128 << (db - 1) }
                        } else {
                            0
                        }
                    } else {
                        let y = f(x);
                        if y <= lo as f64 {
                            lo
                        } else if y >= hi as f64 + 1.0 {
                            hi
                        } else {
                            y as i128
                        }
                    };
                    let t = (v as u64) & (u64::MAX >> (64 - db));
                    let want = if ds && db < 32 {
                        (((t << (64 - db)) as i64 >> (64 - db)) as u64) & 0xffff_ffff
                    } else {
                        t
                    };
                    assert_eq!(*got, want, "cvt.{m}.{d}.{src}({x})");
                }
            }
        }
    }
}

#[test]
fn integer_to_float_in_every_mode() {
    let mut r = rng(33);
    let src = ints(&mut r, 200);
    let cases: Vec<Vec<u64>> = src.iter().map(|&v| vec![v]).collect();
    let t16 = Table16::f16();
    let tbf = Table16::bf16();
    for a in ["u64", "s64", "u32", "s32", "s16"] {
        for (mode, m) in MODES {
            let f32s = run(&format!("cvt.{m}.f32.{a} %d, %a0;"), "f32", &[reg_of(a)], &cases);
            let f64s = run(&format!("cvt.{m}.f64.{a} %d, %a0;"), "f64", &[reg_of(a)], &cases);
            let f16s = run(&format!("cvt.{m}.f16.{a} %d, %a0;"), "b16", &[reg_of(a)], &cases);
            let bf16s = run(&format!("cvt.{m}.bf16.{a} %d, %a0;"), "b16", &[reg_of(a)], &cases);
            for (k, &v) in src.iter().enumerate() {
                let x = value_of(v, a);
                // f32: the nearest-even cast, moved by one step when the direction asks.
                let n = x as f32;
                let c = n as i128;
                let err = (x - c).signum() as f64;
                assert_eq!(
                    f32::from_bits(f32s[k] as u32),
                    fp_common::adjust32(n, err, mode),
                    "cvt.{m}.f32.{a}({x})"
                );
                let n = x as f64;
                let err = (x - n as i128).signum() as f64;
                assert_eq!(
                    f64::from_bits(f64s[k]),
                    fp_common::adjust64(n, err, mode),
                    "cvt.{m}.f64.{a}({x})"
                );
                if a != "u64" && a != "s64" {
                    assert_eq!(f16s[k], t16.round(x as f64, mode).unwrap() as u64, "cvt.{m}.f16.{a}({x})");
                    assert_eq!(bf16s[k], tbf.round(x as f64, mode).unwrap() as u64, "cvt.{m}.bf16.{a}({x})");
                }
            }
        }
    }
}

/// f32 values exactly halfway between two bf16 (and f16) values, with even and odd kept
/// mantissas, and just off halfway.
fn tie_cases() -> Vec<f32> {
    let mut v = Vec::new();
    for base in [0x3f80_0000u32, 0x3f81_0000, 0x4049_0000, 0xc2f7_0000, 0x0001_0000, 0x7f7f_0000] {
        v.push(f32::from_bits(base | 0x8000)); // halfway
        v.push(f32::from_bits(base | 0x8001)); // just above
        v.push(f32::from_bits(base | 0x7fff)); // just below
    }
    // f16 ties: 1 + 2^-11 (even kept), 1 + 3·2^-11 (odd kept), and a sub-normal halfway.
    v.extend([
        1.0 + 2f32.powi(-11),
        1.0 + 3.0 * 2f32.powi(-11),
        2f32.powi(-25),
        3.0 * 2f32.powi(-25),
        65520.0,
        65519.0,
    ]);
    v
}

#[test]
fn float_narrowing_in_every_mode_with_ties_to_even() {
    let mut r = rng(34);
    let mut xs: Vec<f32> = (0..300).map(|k| f32_in(&mut r, if k % 3 == 0 { 0 } else { 90 }, 160)).collect();
    xs.extend(tie_cases());
    xs.extend([f32::INFINITY, f32::NEG_INFINITY, f32::MAX, -0.0, 0.0]);
    let cases: Vec<Vec<u64>> =
        xs.iter().map(|x| vec![x.to_bits() as u64]).chain([vec![0x7fc0_0000u64]]).collect();
    let t16 = Table16::f16();
    let tbf = Table16::bf16();
    for (mode, m) in MODES {
        for (ty, table, exp_bits) in [("f16", &t16, 5), ("bf16", &tbf, 8)] {
            let out = run(&format!("cvt.{m}.{ty}.f32 %d, %a0;"), "b16", &["f32"], &cases);
            for (c, got) in cases.iter().zip(&out) {
                let x = f32::from_bits(c[0] as u32) as f64;
                match table.round(x, mode) {
                    Some(want) => assert_eq!(*got, want as u64, "cvt.{m}.{ty}.f32({x:e})"),
                    None => assert!(fp_common::nan16(*got, exp_bits)),
                }
            }
            // From f64, rounding once (no double rounding through f32).
            let wide: Vec<f64> = xs.iter().map(|&x| x as f64 * (1.0 + 2f64.powi(-30))).collect();
            let wcases: Vec<Vec<u64>> = wide.iter().map(|x| vec![x.to_bits()]).collect();
            let out = run(&format!("cvt.{m}.{ty}.f64 %d, %a0;"), "b16", &["f64"], &wcases);
            for (x, got) in wide.iter().zip(&out) {
                assert_eq!(*got, table.round(*x, mode).unwrap() as u64, "cvt.{m}.{ty}.f64({x:e})");
            }
        }
        // f64 → f32.
        let wide: Vec<f64> =
            (0..300).map(|k| f64_in(&mut r, if k % 4 == 0 { 850 } else { 1000 }, 1200)).collect();
        let wcases: Vec<Vec<u64>> = wide.iter().map(|x| vec![x.to_bits()]).collect();
        let out = run(&format!("cvt.{m}.f32.f64 %d, %a0;"), "f32", &["f64"], &wcases);
        for (x, got) in wide.iter().zip(&out) {
            assert_eq!(
                f32::from_bits(*got as u32).to_bits(),
                f64_to_f32(*x, mode).to_bits(),
                "cvt.{m}.f32.f64({x:e})"
            );
        }
    }
    // Explicit bf16 ties: 1 + 2^-8 → 1 (even), (1 + 2^-7) + 2^-8 → 1 + 2^-6.
    let out = run(
        "cvt.rn.bf16.f32 %d, %a0;",
        "b16",
        &["f32"],
        &[vec![0x3f80_8000], vec![0x3f81_8000], vec![0x3f80_8001]],
    );
    assert_eq!(out, vec![0x3f80, 0x3f82, 0x3f81]);
}

#[test]
fn packed_pairs_put_a_in_the_upper_half() {
    let mut r = rng(35);
    let xs: Vec<f32> = (0..200).map(|_| f32_in(&mut r, 100, 150)).chain(tie_cases()).collect();
    let pairs: Vec<Vec<u64>> = xs
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| vec![c[0].to_bits() as u64, c[1].to_bits() as u64])
        .collect();
    for ty in ["f16", "bf16"] {
        for m in ["rn", "rz"] {
            for relu in ["", ".relu"] {
                let packed =
                    run(&format!("cvt.{m}{relu}.{ty}x2.f32 %d, %a0, %a1;"), "b32", &["f32", "f32"], &pairs);
                let singles: Vec<Vec<u64>> = pairs.iter().flat_map(|p| [vec![p[0]], vec![p[1]]]).collect();
                let one = run(&format!("cvt.{m}{relu}.{ty}.f32 %d, %a0;"), "b16", &["f32"], &singles);
                for (k, got) in packed.iter().enumerate() {
                    assert_eq!(got >> 16, one[2 * k], "{ty}x2 upper half from a");
                    assert_eq!(got & 0xffff, one[2 * k + 1], "{ty}x2 lower half from b");
                }
            }
        }
    }
    let out = run(
        "cvt.rn.bf16x2.f32 %d, %a0, %a1;",
        "b32",
        &["f32", "f32"],
        &[vec![1f32.to_bits() as u64, 2f32.to_bits() as u64]],
    );
    assert_eq!(out, vec![0x3f80_4000]);
}

#[test]
fn relu_satfinite_sat_and_ftz() {
    let b = |x: f32| vec![x.to_bits() as u64];
    let cases = vec![b(-2.0), b(3.0), b(f32::NAN), b(1e6), b(-1e6), b(f32::NEG_INFINITY)];
    let relu = run("cvt.rn.relu.f16.f32 %d, %a0;", "b16", &["f32"], &cases);
    assert_eq!(relu[..3], [0, 0x4200, 0x7fff]);
    assert_eq!(relu[3], 0x7c00);
    let satf = run("cvt.rn.satfinite.f16.f32 %d, %a0;", "b16", &["f32"], &cases);
    assert_eq!(satf[3..], [0x7bff, 0xfbff, 0xfbff]);
    assert!(fp_common::nan16(satf[2], 5), "NaN stays NaN under .satfinite");
    let satf = run("cvt.rz.relu.satfinite.bf16.f32 %d, %a0;", "b16", &["f32"], &[b(f32::INFINITY), b(-1.0)]);
    assert_eq!(satf, vec![0x7f7f, 0]);
    // .sat: [0, 1], NaN → +0; cvt.sat.f32.f32 is the clamp NVRTC emits.
    let out =
        run("cvt.sat.f32.f32 %d, %a0;", "f32", &["f32"], &[b(-0.5), b(0.25), b(7.0), b(f32::NAN), b(-0.0)]);
    assert_eq!(out, vec![0, 0.25f32.to_bits() as u64, 1f32.to_bits() as u64, 0, 0]);
    let out = run("cvt.rn.sat.f16.f32 %d, %a0;", "b16", &["f32"], &[b(2.0), b(0.5), b(-3.0)]);
    assert_eq!(out, vec![0x3c00, 0x3800, 0]);
    // .ftz: sub-normal f32 inputs and results become signed zeros.
    let sub = f32::from_bits(0x8000_0100);
    assert_eq!(run("cvt.ftz.f32.f32 %d, %a0;", "f32", &["f32"], &[b(sub)]), vec![0x8000_0000]);
    assert_eq!(run("cvt.f32.f32 %d, %a0;", "f32", &["f32"], &[b(sub)]), vec![0x8000_0100]);
    assert_eq!(run("cvt.ftz.f64.f32 %d, %a0;", "f64", &["f32"], &[b(sub)]), vec![(-0.0f64).to_bits()]);
    let tiny = vec![1e-40f64.to_bits()];
    assert_eq!(run("cvt.rn.ftz.f32.f64 %d, %a0;", "f32", &["f64"], &[tiny.clone()]), vec![0]);
    assert_ne!(run("cvt.rn.f32.f64 %d, %a0;", "f32", &["f64"], &[tiny]), vec![0]);
    assert_eq!(run("cvt.rmi.ftz.s32.f32 %d, %a0;", "b32", &["f32"], &[b(sub)]), vec![0]);
    assert_eq!(run("cvt.rmi.s32.f32 %d, %a0;", "b32", &["f32"], &[b(sub)]), vec![0xffff_ffff]);
}

#[test]
fn widening_is_exact_and_round_to_integral() {
    let mut r = rng(36);
    let h: Vec<u64> = (0..300).map(|_| r.random::<u16>() as u64).collect();
    let cases: Vec<Vec<u64>> = h.iter().map(|&v| vec![v]).collect();
    let f16_32 = run("cvt.f32.f16 %d, %a0;", "f32", &["b16"], &cases);
    let f16_64 = run("cvt.f64.f16 %d, %a0;", "f64", &["b16"], &cases);
    let bf16_32 = run("cvt.f32.bf16 %d, %a0;", "f32", &["b16"], &cases);
    for (k, &v) in h.iter().enumerate() {
        let x = half::f16::from_bits(v as u16);
        if x.is_nan() {
            assert!(f32::from_bits(f16_32[k] as u32).is_nan());
            continue;
        }
        assert_eq!(f16_32[k], x.to_f32().to_bits() as u64);
        assert_eq!(f16_64[k], x.to_f64().to_bits());
        let bf = f32::from_bits((v as u32) << 16);
        if !bf.is_nan() {
            assert_eq!(bf16_32[k], bf.to_bits() as u64);
        }
    }
    let x = f32_in(&mut r, 0, 254);
    assert_eq!(
        run("cvt.f64.f32 %d, %a0;", "f64", &["f32"], &[vec![x.to_bits() as u64]]),
        vec![(x as f64).to_bits()]
    );
    // Rounding to an integral value in the same type.
    let vals = [2.5f32, 3.5, -2.5, -0.4, 1.7, -1.7, 1e20, f32::INFINITY];
    let cases: Vec<Vec<u64>> = vals.iter().map(|x| vec![x.to_bits() as u64]).collect();
    let irnd: [Named<f32>; 4] =
        [("rni", f32::round_ties_even), ("rzi", f32::trunc), ("rmi", f32::floor), ("rpi", f32::ceil)];
    for (m, f) in irnd {
        let out = run(&format!("cvt.{m}.f32.f32 %d, %a0;"), "f32", &["f32"], &cases);
        let want: Vec<u64> = vals.iter().map(|&x| f(x).to_bits() as u64).collect();
        assert_eq!(out, want, "cvt.{m}.f32.f32");
        let wcases: Vec<Vec<u64>> = vals.iter().map(|&x| vec![(x as f64).to_bits()]).collect();
        let out = run(&format!("cvt.{m}.f64.f64 %d, %a0;"), "f64", &["f64"], &wcases);
        let want: Vec<u64> = vals.iter().map(|&x| (f(x) as f64).to_bits()).collect();
        assert_eq!(out, want, "cvt.{m}.f64.f64");
    }
    assert_eq!(
        run("cvt.rni.f32.f32 %d, %a0;", "f32", &["f32"], &[vec![(-0.4f32).to_bits() as u64]]),
        vec![0x8000_0000]
    );
    // f16 → bf16 and bf16 → f16 round.
    let out = run(
        "cvt.rn.bf16.f16 %d, %a0;",
        "b16",
        &["b16"],
        &[vec![0x3c01], vec![0x3c04], vec![0x3c0c], vec![0x3c10]],
    );
    assert_eq!(out, vec![0x3f80, 0x3f80, 0x3f82, 0x3f82]);
    // tf32: .rna rounds ties away; the result keeps the f32 layout with 13 low zero bits.
    let out = run(
        "cvt.rna.tf32.f32 %d, %a0;",
        "b32",
        &["f32"],
        &[vec![0x3f80_1000], vec![0x3f80_0fff], vec![0x3f80_3000]],
    );
    assert_eq!(out, vec![0x3f80_2000, 0x3f80_0000, 0x3f80_4000]);
    let out = run("cvt.rn.tf32.f32 %d, %a0;", "b32", &["f32"], &[vec![0x3f80_1000], vec![0x3f80_3000]]);
    assert_eq!(out, vec![0x3f80_0000, 0x3f80_4000]);
}

#[test]
fn malformed_conversions_are_refused() {
    assert!(refused("cvt.s32.f32 %d, %a0;", "b32", &["f32"]));
    assert!(refused("cvt.rni.f32.f64 %d, %a0;", "f32", &["f64"]));
    assert!(refused("cvt.rni.s32.s16 %d, %a0;", "b32", &["b16"]));
    assert!(refused("cvt.rn.relu.f32.f64 %d, %a0;", "f32", &["f64"]));
    assert!(refused("cvt.rn.satfinite.e4m3x2.f32 %d, %a0, %a0;", "b16", &["f32"]));
    assert!(!refused("cvt.rn.f16x2.f32 %d, %a0, %a0;", "b32", &["f32"]));
    let _ = Mode::N;
}
