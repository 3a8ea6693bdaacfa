//! Integer arithmetic against host models written from the PTX ISA (§9.7.1, §9.7.2): every
//! width and signedness, seeded random inputs with edge values, and the carry chains.

mod alu_util;

use alu_util::{INT_TYPES, ext, op, rows, run_rows, trunc};

/// Checks `ptx_op.TYPE` against `model(a, b, c)` (values sign/zero-extended) for every type.
fn check_all(name: &str, nsrc: usize, seed: u64, model: impl Fn(i128, i128, i128, u32, bool) -> i128) {
    for (k, &(ty, reg, bits, signed)) in INT_TYPES.iter().enumerate() {
        let input = rows(seed + k as u64, 200);
        let got = op(&format!("{name}.{ty}"), reg, reg, nsrc, &input);
        for (r, g) in input.iter().zip(got) {
            let [a, b, c] = [0, 1, 2].map(|i| ext(r[i], bits, signed));
            let want = trunc(model(a, b, c, bits, signed), bits);
            assert_eq!(g, want, "{name}.{ty} a={:#x} b={:#x} c={:#x}", r[0], r[1], r[2]);
        }
    }
}

#[test]
fn add_sub_wrap_in_every_width() {
    check_all("add", 2, 10, |a, b, _, _, _| a + b);
    check_all("sub", 2, 20, |a, b, _, _, _| a - b);
}

#[test]
fn mul_lo_hi_and_mad_lo_hi() {
    // The 128-bit two's complement product is exact for every type (u64 * u64 included).
    let p = |a: i128, b: i128| (a as u128).wrapping_mul(b as u128);
    check_all("mul.lo", 2, 30, |a, b, _, _, _| p(a, b) as i128);
    check_all("mul.hi", 2, 40, |a, b, _, bits, _| (p(a, b) >> bits) as i128);
    check_all("mad.lo", 3, 50, |a, b, c, _, _| (p(a, b) as i128).wrapping_add(c));
    check_all("mad.hi", 3, 60, |a, b, c, bits, _| ((p(a, b) >> bits) as i128).wrapping_add(c));
}

#[test]
fn mul_and_mad_wide_give_the_double_width_product() {
    for &(ty, reg, wide_reg, bits, signed) in &[
        ("u16", "b16", "b32", 16, false),
        ("s16", "b16", "b32", 16, true),
        ("u32", "b32", "b64", 32, false),
        ("s32", "b32", "b64", 32, true),
    ] {
        let input = rows(70 + bits as u64 + signed as u64, 200);
        let got = op(&format!("mul.wide.{ty}"), reg, wide_reg, 2, &input);
        for (r, g) in input.iter().zip(got) {
            let want = trunc(ext(r[0], bits, signed) * ext(r[1], bits, signed), 2 * bits);
            assert_eq!(g, want, "mul.wide.{ty} {:#x} {:#x}", r[0], r[1]);
        }
        // mad.wide: c and d are double width.
        let decl = format!("  .reg .{reg} %a, %b;\n  .reg .{wide_reg} %c, %d;");
        let body = format!(
            "  ld.global.{reg} %a, [%in];\n  ld.global.{reg} %b, [%in+8];\n  ld.global.{wide_reg} %c, [%in+16];\n  mad.wide.{ty} %d, %a, %b, %c;\n  st.global.{wide_reg} [%out], %d;"
        );
        for (r, g) in input.iter().zip(run_rows(&decl, &body, &input)) {
            let want = trunc(
                ext(r[0], bits, signed) * ext(r[1], bits, signed) + ext(r[2], 2 * bits, false),
                2 * bits,
            );
            assert_eq!(g[0], want, "mad.wide.{ty}");
        }
    }
}

#[test]
fn div_rem_truncate_toward_zero() {
    // Division by zero and MIN / -1 are checked separately.
    let nonzero = |seed| {
        let mut r = rows(seed, 300);
        for row in &mut r {
            if row[1] & 0xffff == 0 {
                row[1] |= 3;
            }
            if row[1] & 0xffff == 0xffff {
                row[1] ^= 2;
            }
        }
        r
    };
    for &(ty, reg, bits, signed) in INT_TYPES {
        let input = nonzero(80 + bits as u64);
        let q = op(&format!("div.{ty}"), reg, reg, 2, &input);
        let m = op(&format!("rem.{ty}"), reg, reg, 2, &input);
        for ((r, q), m) in input.iter().zip(q).zip(m) {
            let (a, b) = (ext(r[0], bits, signed), ext(r[1], bits, signed));
            assert_eq!(q, trunc(a / b, bits), "div.{ty} {a} / {b}");
            assert_eq!(m, trunc(a % b, bits), "rem.{ty} {a} % {b}");
        }
    }
}

/// The PTX ISA leaves division by zero unspecified; like the hardware this gives all ones
/// (and a remainder equal to the dividend) without trapping. MIN / -1 wraps to MIN.
#[test]
fn div_by_zero_and_overflow_are_defined_here() {
    let input = vec![
        [1234, 0, 0, 0],
        [0x8000_0000, 0, 0, 0],
        [0x8000_0000, 0xffff_ffff, 0, 0],
        [7, 0xffff_fffe, 0, 0],
    ];
    let q = op("div.u32", "b32", "b32", 2, &input);
    let r = op("rem.u32", "b32", "b32", 2, &input);
    assert_eq!(q[..2], [0xffff_ffff, 0xffff_ffff]);
    assert_eq!(r[..2], [1234, 0x8000_0000]);
    let q = op("div.s32", "b32", "b32", 2, &input);
    let r = op("rem.s32", "b32", "b32", 2, &input);
    assert_eq!(q, vec![0xffff_ffff, 0xffff_ffff, 0x8000_0000, 0xffff_fffd]);
    assert_eq!(r, vec![1234, 0x8000_0000, 0, 1]);
    let q = op("div.s64", "b64", "b64", 2, &[[5, 0, 0, 0], [1 << 63, u64::MAX, 0, 0]]);
    assert_eq!(q, vec![u64::MAX, 1 << 63]);
}

#[test]
fn min_max_abs_neg_sad() {
    check_all("min", 2, 90, |a, b, _, _, _| a.min(b));
    check_all("max", 2, 100, |a, b, _, _, _| a.max(b));
    check_all("sad", 3, 110, |a, b, c, _, _| (a - b).abs() + c);
    for &(ty, reg, bits, signed) in INT_TYPES.iter().filter(|t| t.3) {
        let input = rows(120 + bits as u64, 200);
        let abs = op(&format!("abs.{ty}"), reg, reg, 1, &input);
        let neg = op(&format!("neg.{ty}"), reg, reg, 1, &input);
        for ((r, x), n) in input.iter().zip(abs).zip(neg) {
            let a = ext(r[0], bits, signed);
            // abs(MIN) wraps to MIN.
            assert_eq!(x, trunc(a.abs(), bits), "abs.{ty} {a}");
            assert_eq!(n, trunc(-a, bits), "neg.{ty} {a}");
        }
    }
}

#[test]
fn saturating_s32_forms() {
    let input = rows(130, 300);
    let sat = |v: i128| v.clamp(i32::MIN as i128, i32::MAX as i128);
    let s = |v: u64| ext(v, 32, true);
    let add = op("add.sat.s32", "b32", "b32", 2, &input);
    let sub = op("sub.sat.s32", "b32", "b32", 2, &input);
    let mad = op("mad.hi.sat.s32", "b32", "b32", 3, &input);
    for (k, r) in input.iter().enumerate() {
        assert_eq!(add[k], trunc(sat(s(r[0]) + s(r[1])), 32));
        assert_eq!(sub[k], trunc(sat(s(r[0]) - s(r[1])), 32));
        assert_eq!(mad[k], trunc(sat(((s(r[0]) * s(r[1])) >> 32) + s(r[2])), 32), "mad.hi.sat {r:x?}");
    }
}

#[test]
fn mul24_and_mad24_use_the_low_24_bits() {
    let input = rows(140, 300);
    for (signed, ty) in [(false, "u32"), (true, "s32")] {
        let a24 = |v: u64| ext(v, 24, signed);
        let lo = op(&format!("mul24.lo.{ty}"), "b32", "b32", 2, &input);
        let hi = op(&format!("mul24.hi.{ty}"), "b32", "b32", 2, &input);
        let mlo = op(&format!("mad24.lo.{ty}"), "b32", "b32", 3, &input);
        let mhi = op(&format!("mad24.hi.{ty}"), "b32", "b32", 3, &input);
        for (k, r) in input.iter().enumerate() {
            let p = a24(r[0]) * a24(r[1]);
            assert_eq!(lo[k], trunc(p, 32), "mul24.lo.{ty}");
            assert_eq!(hi[k], trunc(p >> 16, 32), "mul24.hi.{ty}");
            assert_eq!(mlo[k], trunc(p + r[2] as i128, 32));
            assert_eq!(mhi[k], trunc((p >> 16) + r[2] as i128, 32));
        }
    }
    let sat = op("mad24.hi.sat.s32", "b32", "b32", 3, &input);
    for (k, r) in input.iter().enumerate() {
        let p = ext(r[0], 24, true) * ext(r[1], 24, true);
        let t = ext(trunc(p >> 16, 32), 32, true);
        assert_eq!(sat[k], trunc((t + ext(r[2], 32, true)).clamp(i32::MIN as i128, i32::MAX as i128), 32));
    }
}

#[test]
fn packed_half_word_forms() {
    let input = rows(150, 300);
    for (signed, ty) in [(false, "u16x2"), (true, "s16x2")] {
        for name in ["add", "sub", "min", "max"] {
            let got = op(&format!("{name}.{ty}"), "b32", "b32", 2, &input);
            for (r, g) in input.iter().zip(got) {
                let mut want = 0;
                for h in 0..2 {
                    let (a, b) = (ext(r[0] >> (16 * h), 16, signed), ext(r[1] >> (16 * h), 16, signed));
                    let v = match name {
                        "add" => a + b,
                        "sub" => a - b,
                        "min" => a.min(b),
                        _ => a.max(b),
                    };
                    want |= trunc(v, 16) << (16 * h);
                }
                assert_eq!(g, want, "{name}.{ty} {:#x} {:#x}", r[0], r[1]);
            }
        }
    }
    let relu = op("max.relu.s16x2", "b32", "b32", 2, &input);
    let relu32 = op("min.relu.s32", "b32", "b32", 2, &input);
    for (k, r) in input.iter().enumerate() {
        let h = |v: u64, i: u32| ext(v >> (16 * i), 16, true);
        let want = (0..2).fold(0, |w, i| w | trunc(h(r[0], i).max(h(r[1], i)).max(0), 16) << (16 * i));
        assert_eq!(relu[k], want);
        assert_eq!(relu32[k], trunc(ext(r[0], 32, true).min(ext(r[1], 32, true)).max(0), 32));
    }
}

/// 128-bit addition and subtraction through 32-bit limbs, as in the PTX ISA's addc/subc
/// examples, and 64-bit limbs with the `.u64` forms.
#[test]
fn carry_chains_add_and_subtract_128_bits() {
    let input = rows(160, 256);
    let decl = "  .reg .b32 %x<4>, %y<4>, %s<4>, %t<4>;\n  .reg .b64 %xx<2>, %yy<2>, %ss<2>;";
    let body = "  ld.global.v4.u32 {%x0, %x1, %x2, %x3}, [%in];\n  ld.global.v4.u32 {%y0, %y1, %y2, %y3}, [%in+16];
  add.cc.u32 %s0, %x0, %y0;\n  addc.cc.u32 %s1, %x1, %y1;\n  addc.cc.s32 %s2, %x2, %y2;\n  addc.u32 %s3, %x3, %y3;
  sub.cc.u32 %t0, %x0, %y0;\n  subc.cc.u32 %t1, %x1, %y1;\n  subc.cc.u32 %t2, %x2, %y2;\n  subc.u32 %t3, %x3, %y3;
  st.global.v4.u32 [%out], {%s0, %s1, %s2, %s3};\n  st.global.v4.u32 [%out+16], {%t0, %t1, %t2, %t3};";
    let got = run_rows(decl, body, &input);
    let body64 = "  ld.global.v2.u64 {%xx0, %xx1}, [%in];\n  ld.global.v2.u64 {%yy0, %yy1}, [%in+16];
  add.cc.u64 %ss0, %xx0, %yy0;\n  addc.u64 %ss1, %xx1, %yy1;\n  st.global.v2.u64 [%out], {%ss0, %ss1};
  sub.cc.s64 %ss0, %xx0, %yy0;\n  subc.cc.u64 %ss1, %xx1, %yy1;\n  st.global.v2.u64 [%out+16], {%ss0, %ss1};";
    let got64 = run_rows(decl, body64, &input);
    for ((r, g), g64) in input.iter().zip(got).zip(got64) {
        let x = r[0] as u128 | (r[1] as u128) << 64;
        let y = r[2] as u128 | (r[3] as u128) << 64;
        let (s, t) = (x.wrapping_add(y), x.wrapping_sub(y));
        assert_eq!([g[0], g[1]], [s as u64, (s >> 64) as u64], "{x:#x} + {y:#x}");
        assert_eq!([g[2], g[3]], [t as u64, (t >> 64) as u64], "{x:#x} - {y:#x}");
        assert_eq!(g64, g);
    }
}

/// The extended-precision multiply from the PTX ISA's madc example (and kiln's PTX):
/// `[r3..r0] = [a_hi, a_lo] * [b_hi, b_lo] + [c_hi, c_lo]` with mad.lo.cc / madc.hi.cc.
#[test]
fn carry_chain_multiplies_64_by_64_plus_64() {
    let input = rows(170, 256);
    let decl = "  .reg .b32 %alo, %ahi, %blo, %bhi, %clo, %chi, %r<4>;\n  .reg .b64 %ra, %rb, %rc, %lo, %hi;";
    let body = "  ld.global.u64 %ra, [%in];\n  ld.global.u64 %rb, [%in+8];\n  ld.global.u64 %rc, [%in+16];
  mov.b64 {%alo, %ahi}, %ra;\n  mov.b64 {%blo, %bhi}, %rb;\n  mov.b64 {%clo, %chi}, %rc;
  mad.lo.cc.u32 %r0, %alo, %blo, %clo;\n  madc.hi.cc.u32 %r1, %alo, %blo, %chi;\n  madc.hi.u32 %r2, %alo, %bhi, 0;
  mad.lo.cc.u32 %r1, %alo, %bhi, %r1;\n  madc.hi.cc.u32 %r2, %ahi, %blo, %r2;\n  madc.hi.u32 %r3, %ahi, %bhi, 0;
  mad.lo.cc.u32 %r1, %ahi, %blo, %r1;\n  madc.lo.cc.u32 %r2, %ahi, %bhi, %r2;\n  addc.u32 %r3, %r3, 0;
  mov.b64 %lo, {%r0, %r1};\n  mov.b64 %hi, {%r2, %r3};\n  st.global.u64 [%out], %lo;\n  st.global.u64 [%out+8], %hi;";
    for (r, g) in input.iter().zip(run_rows(decl, body, &input)) {
        let want = r[0] as u128 * r[1] as u128 + r[2] as u128;
        assert_eq!(
            [g[0], g[1]],
            [want as u64, (want >> 64) as u64],
            "{:#x} * {:#x} + {:#x}",
            r[0],
            r[1],
            r[2]
        );
    }
}

/// Borrow semantics of a single step, and a `.s32` `mad.hi.cc` using the signed high word.
#[test]
fn carry_flag_values() {
    let input = vec![[5, 7, 0, 0], [7, 5, 0, 0], [5, 5, 0, 0], [0, 0xffff_ffff, 0, 0]];
    let decl = "  .reg .b32 %a, %b, %d, %f;";
    let body = "  ld.global.u32 %a, [%in];\n  ld.global.u32 %b, [%in+8];\n  sub.cc.u32 %d, %a, %b;\n  addc.u32 %f, 0, 0;
  st.global.u32 [%out], %d;\n  st.global.u32 [%out+8], %f;";
    let got = run_rows(decl, body, &input);
    // CC.CF holds the borrow: set when b > a.
    let borrow: Vec<u64> = got.iter().map(|g| g[1]).collect();
    assert_eq!(borrow, vec![1, 0, 0, 1]);
    assert_eq!(got[0][0], 0xffff_fffe);
    let body = "  ld.global.u32 %a, [%in];\n  ld.global.u32 %b, [%in+8];\n  mad.hi.cc.s32 %d, %a, %b, 0xffffffff;\n  addc.u32 %f, 0, 0;
  st.global.u32 [%out], %d;\n  st.global.u32 [%out+8], %f;";
    let input = vec![[0xffff_ffff, 2, 0, 0], [0x1000_0000, 0x10, 0, 0]];
    let got = run_rows(decl, body, &input);
    // (-1 * 2) >> 32 = -1 = 0xffffffff; + 0xffffffff = 0x1fffffffe: carry 1.
    assert_eq!(got[0][..2], [0xffff_fffe, 1]);
    // (2^28 * 16) >> 32 = 1; + 0xffffffff carries.
    assert_eq!(got[1][..2], [0, 1]);
}
