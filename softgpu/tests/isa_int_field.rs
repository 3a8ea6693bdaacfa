//! The integer family's bit and byte operations against bit-by-bit host models transcribed
//! from the PTX ISA's pseudocode: popc, clz, brev, bfind, bfe, bfi, prmt, dp4a, dp2a.

mod alu_util;

use alu_util::{ext, op, rows, run_rows, trunc};

fn bit(v: u64, i: u32) -> u64 {
    if i >= 64 { 0 } else { v >> i & 1 }
}

#[test]
fn popc_clz_brev() {
    let input = rows(200, 300);
    for (ty, reg, w) in [("b32", "b32", 32u32), ("b64", "b64", 64)] {
        let popc = op(&format!("popc.{ty}"), reg, "b32", 1, &input);
        let clz = op(&format!("clz.{ty}"), reg, "b32", 1, &input);
        let brev = op(&format!("brev.{ty}"), reg, reg, 1, &input);
        for (k, r) in input.iter().enumerate() {
            let a = r[0];
            assert_eq!(popc[k], (0..w).map(|i| bit(a, i)).sum::<u64>());
            let mut n = 0;
            while n < w && bit(a, w - 1 - n) == 0 {
                n += 1;
            }
            assert_eq!(clz[k], n as u64, "clz.{ty} {a:#x}");
            assert_eq!(brev[k], (0..w).fold(0, |d, i| d | bit(a, w - 1 - i) << i), "brev.{ty} {a:#x}");
        }
    }
}

#[test]
fn bfind_finds_the_most_significant_non_sign_bit() {
    let mut input = rows(210, 300);
    input.push([0, 0, 0, 0]);
    input.push([u64::MAX, 0, 0, 0]);
    for (ty, reg, w, signed) in [
        ("u32", "b32", 32, false),
        ("s32", "b32", 32, true),
        ("u64", "b64", 64, false),
        ("s64", "b64", 64, true),
    ] {
        let plain = op(&format!("bfind.{ty}"), reg, "b32", 1, &input);
        let shift = op(&format!("bfind.shiftamt.{ty}"), reg, "b32", 1, &input);
        for (k, r) in input.iter().enumerate() {
            let mut a = trunc(ext(r[0], w, false), w);
            if signed && bit(a, w - 1) == 1 {
                a = !a & trunc(-1, w);
            }
            let d = (0..w).rev().find(|&i| bit(a, i) == 1).map_or(0xffff_ffff, |i| i as u64);
            assert_eq!(plain[k], d, "bfind.{ty} {:#x}", r[0]);
            assert_eq!(shift[k], if d == 0xffff_ffff { d } else { w as u64 - 1 - d }, "bfind.shiftamt.{ty}");
        }
    }
}

/// Positions and lengths cover 0..=255 (only the low 8 bits count), beyond-msb starts, and
/// zero lengths.
fn field_rows(seed: u64) -> Vec<[u64; 4]> {
    let mut input = rows(seed, 400);
    for (k, r) in input.iter_mut().enumerate() {
        r[1] = match k % 4 {
            0 => r[1] & 0x3f,
            1 => r[1] & 0x1f,
            2 => r[1] & 0x1ff,
            _ => r[1],
        };
        r[2] = match k % 3 {
            0 => r[2] & 0x3f,
            1 => r[2] & 0x1f,
            _ => r[2] & 0x1ff,
        };
    }
    input
}

#[test]
fn bfe_extracts_and_sign_extends() {
    let input = field_rows(220);
    for (ty, reg, w, signed) in [
        ("u32", "b32", 32u32, false),
        ("s32", "b32", 32, true),
        ("u64", "b64", 64, false),
        ("s64", "b64", 64, true),
    ] {
        let decl = format!("  .reg .{reg} %a, %d;\n  .reg .b32 %b, %c;");
        let body = format!(
            "  ld.global.{reg} %a, [%in];\n  ld.global.u32 %b, [%in+8];\n  ld.global.u32 %c, [%in+16];\n  bfe.{ty} %d, %a, %b, %c;\n  st.global.{reg} [%out], %d;"
        );
        for (r, g) in input.iter().zip(run_rows(&decl, &body, &input)) {
            let msb = w - 1;
            let a = r[0];
            let (pos, len) = ((r[1] & 0xff) as u32, (r[2] & 0xff) as u32);
            let sbit = if !signed || len == 0 { 0 } else { bit(a, (pos + len - 1).min(msb)) };
            let want = (0..=msb)
                .fold(0, |d, i| d | (if i < len && pos + i <= msb { bit(a, pos + i) } else { sbit }) << i);
            assert_eq!(g[0], want, "bfe.{ty} a={a:#x} pos={pos} len={len}");
        }
    }
}

#[test]
fn bfi_inserts_a_field() {
    let input = field_rows(230);
    for (ty, reg, w) in [("b32", "b32", 32u32), ("b64", "b64", 64)] {
        let decl = format!("  .reg .{reg} %a, %b, %f;\n  .reg .b32 %c, %d;");
        let body = format!(
            "  ld.global.{reg} %a, [%in];\n  ld.global.{reg} %b, [%in+24];\n  ld.global.u32 %c, [%in+8];\n  ld.global.u32 %d, [%in+16];\n  bfi.{ty} %f, %a, %b, %c, %d;\n  st.global.{reg} [%out], %f;"
        );
        for (r, g) in input.iter().zip(run_rows(&decl, &body, &input)) {
            let (a, b) = (r[0], trunc(ext(r[3], w, false), w));
            let (pos, len) = ((r[1] & 0xff) as u32, (r[2] & 0xff) as u32);
            let mut f = b;
            let mut i = 0;
            while i < len && pos + i < w {
                f = f & !(1 << (pos + i)) | bit(a, i) << (pos + i);
                i += 1;
            }
            assert_eq!(g[0], f, "bfi.{ty} a={a:#x} b={b:#x} pos={pos} len={len}");
        }
    }
}

#[test]
fn prmt_generic_selects_and_replicates_signs() {
    let input = rows(240, 300);
    let got = op("prmt.b32", "b32", "b32", 3, &input);
    for (r, g) in input.iter().zip(got) {
        let src = (r[1] & 0xffff_ffff) << 32 | r[0] & 0xffff_ffff;
        let mut want = 0;
        for k in 0..4 {
            let sel = r[2] >> (4 * k) & 0xf;
            let byte = src >> (8 * (sel & 7)) & 0xff;
            let byte = if sel & 8 != 0 { (byte >> 7) * 0xff } else { byte };
            want |= byte << (8 * k);
        }
        assert_eq!(g, want, "prmt {:#x} {:#x} {:#x}", r[0], r[1], r[2]);
    }
    // The CUB documentation's example: bytes 1, 3, 5, 7 of {0x07060504, 0x03020100}.
    assert_eq!(op("prmt.b32", "b32", "b32", 3, &[[0x0302_0100, 0x0706_0504, 0x7531, 0]]), vec![0x0705_0301]);
}

/// The mode forms, with the PTX ISA's table (source byte numbers for d.b3 d.b2 d.b1 d.b0).
#[test]
fn prmt_modes_follow_the_table() {
    let table: [(&str, [[u64; 4]; 4]); 6] = [
        ("f4e", [[3, 2, 1, 0], [4, 3, 2, 1], [5, 4, 3, 2], [6, 5, 4, 3]]),
        ("b4e", [[5, 6, 7, 0], [6, 7, 0, 1], [7, 0, 1, 2], [0, 1, 2, 3]]),
        ("rc8", [[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]]),
        ("ecl", [[3, 2, 1, 0], [3, 2, 1, 1], [3, 2, 2, 2], [3, 3, 3, 3]]),
        ("ecr", [[0, 0, 0, 0], [1, 1, 1, 0], [2, 2, 1, 0], [3, 2, 1, 0]]),
        ("rc16", [[1, 0, 1, 0], [3, 2, 3, 2], [1, 0, 1, 0], [3, 2, 3, 2]]),
    ];
    let input = rows(250, 256);
    for (mode, rows_) in table {
        let got = op(&format!("prmt.b32.{mode}"), "b32", "b32", 3, &input);
        for (r, g) in input.iter().zip(got) {
            let src = (r[1] & 0xffff_ffff) << 32 | r[0] & 0xffff_ffff;
            let sel = rows_[(r[2] & 3) as usize];
            let want = (0..4).fold(0, |d, k| d | (src >> (8 * sel[3 - k]) & 0xff) << (8 * k));
            assert_eq!(g, want, "prmt.{mode} c={:#x}", r[2]);
        }
    }
}

#[test]
fn dp4a_and_dp2a_accumulate_dot_products() {
    let input = rows(260, 300);
    let e = |v: u64, i: u32, w: u32, s: bool| ext(v >> (i * w), w, s);
    for (ta, tb) in [("u32", "u32"), ("u32", "s32"), ("s32", "u32"), ("s32", "s32")] {
        let (sa, sb) = (ta == "s32", tb == "s32");
        let got = op(&format!("dp4a.{ta}.{tb}"), "b32", "b32", 3, &input);
        for (r, g) in input.iter().zip(got) {
            let dot: i128 = (0..4).map(|i| e(r[0], i, 8, sa) * e(r[1], i, 8, sb)).sum();
            assert_eq!(g, trunc(r[2] as i128 + dot, 32), "dp4a.{ta}.{tb}");
        }
        for (mode, sel) in [("lo", 0), ("hi", 2)] {
            let got = op(&format!("dp2a.{mode}.{ta}.{tb}"), "b32", "b32", 3, &input);
            for (r, g) in input.iter().zip(got) {
                let dot: i128 = (0..2).map(|i| e(r[0], i, 16, sa) * e(r[1], sel + i, 8, sb)).sum();
                assert_eq!(g, trunc(r[2] as i128 + dot, 32), "dp2a.{mode}.{ta}.{tb}");
            }
        }
    }
}
