//! Logic and shift instructions (PTX ISA §9.7.8) against host models: every width, predicate
//! logic with negated sources, shift amounts past the width, funnel shifts and lop3 tables.

mod alu_util;

use alu_util::{op, rng, rows, run_rows, trunc};
use rand::Rng;

const WIDTHS: [(&str, u32); 3] = [("b16", 16), ("b32", 32), ("b64", 64)];

fn m(w: u32) -> u64 {
    trunc(-1, w)
}

#[test]
fn and_or_xor_not_cnot() {
    let mut input = rows(300, 300);
    input.push([0, 5, 0, 0]);
    for (ty, w) in WIDTHS {
        let and = op(&format!("and.{ty}"), ty, ty, 2, &input);
        let or = op(&format!("or.{ty}"), ty, ty, 2, &input);
        let xor = op(&format!("xor.{ty}"), ty, ty, 2, &input);
        let not = op(&format!("not.{ty}"), ty, ty, 1, &input);
        let cnot = op(&format!("cnot.{ty}"), ty, ty, 1, &input);
        for (k, r) in input.iter().enumerate() {
            let (a, b) = (r[0] & m(w), r[1] & m(w));
            assert_eq!(
                [and[k], or[k], xor[k], not[k]],
                [a & b, a | b, a ^ b, !a & m(w)],
                "{ty} {a:#x} {b:#x}"
            );
            assert_eq!(cnot[k], (a == 0) as u64);
        }
    }
    // A sign-extended immediate is cut to the width.
    let decl = "  .reg .b32 %a, %d;";
    let body = "  ld.global.u32 %a, [%in];\n  and.b32 %d, %a, -4;\n  st.global.u32 [%out], %d;";
    assert_eq!(run_rows(decl, body, &[[0x1234_5677, 0, 0, 0]])[0][0], 0x1234_5674);
}

/// `and/or/xor/not.pred` with `!%p` sources.
#[test]
fn predicate_logic_with_negated_sources() {
    let decl = "  .reg .b32 %a, %b, %v<8>;\n  .reg .pred %p, %q, %r<8>;";
    let body = "  ld.global.u32 %a, [%in];\n  ld.global.u32 %b, [%in+8];
  setp.ne.u32 %p, %a, 0;\n  setp.ne.u32 %q, %b, 0;
  and.pred %r0, %p, %q;\n  or.pred %r1, %p, !%q;\n  xor.pred %r2, !%p, %q;\n  not.pred %r3, %p;
  and.pred %r4, !%p, !%q;\n  or.pred %r5, !%p, %q;\n  xor.pred %r6, %p, %q;\n  not.pred %r7, %q;
  selp.u32 %v0, 1, 0, %r0;\n  selp.u32 %v1, 1, 0, %r1;\n  selp.u32 %v2, 1, 0, %r2;\n  selp.u32 %v3, 1, 0, %r3;
  selp.u32 %v4, 1, 0, %r4;\n  selp.u32 %v5, 1, 0, %r5;\n  selp.u32 %v6, 1, 0, %r6;\n  selp.u32 %v7, 1, 0, %r7;
  st.global.v4.u32 [%out], {%v0, %v1, %v2, %v3};\n  st.global.v4.u32 [%out+16], {%v4, %v5, %v6, %v7};";
    let input: Vec<[u64; 4]> = (0..4).map(|k| [k & 1, k >> 1, 0, 0]).collect();
    for (r, g) in input.iter().zip(run_rows(decl, body, &input)) {
        let (p, q) = (r[0] == 1, r[1] == 1);
        let v = [p & q, p | !q, !p ^ q, !p, !p & !q, !p | q, p ^ q, !q];
        let want: Vec<u64> = v.chunks(2).map(|c| c[0] as u64 | (c[1] as u64) << 32).collect();
        assert_eq!(g.to_vec(), want, "p={p} q={q}");
    }
}

/// Amounts are unsigned 32-bit; past the width `shl` and `shr.u` give 0 and `shr.s` the
/// sign fill.
#[test]
fn shifts_clamp_past_the_width() {
    let mut input = rows(310, 400);
    let mut r = rng(311);
    for row in &mut input {
        row[1] = match r.random_range(0..4) {
            0 => r.random_range(0..70),
            1 => r.random_range(0..16),
            2 => 0xffff_ffff - r.random_range(0..3),
            _ => r.random::<u32>() as u64,
        };
    }
    for (ty, w) in WIDTHS {
        let s = format!("s{w}");
        let u = format!("u{w}");
        let decl = format!("  .reg .{ty} %a, %d<4>;\n  .reg .b32 %n;");
        let body = format!(
            "  ld.global.{ty} %a, [%in];\n  ld.global.u32 %n, [%in+8];\n  shl.{ty} %d0, %a, %n;\n  shr.{u} %d1, %a, %n;\n  shr.{s} %d2, %a, %n;\n  shr.{ty} %d3, %a, %n;
  st.global.{ty} [%out], %d0;\n  st.global.{ty} [%out+8], %d1;\n  st.global.{ty} [%out+16], %d2;\n  st.global.{ty} [%out+24], %d3;"
        );
        for (r, g) in input.iter().zip(run_rows(&decl, &body, &input)) {
            let (a, n) = (r[0] & m(w), r[1]);
            let neg = a >> (w - 1) & 1 == 1;
            let shl = if n >= w as u64 { 0 } else { a << n & m(w) };
            let shr = if n >= w as u64 { 0 } else { a >> n };
            let sar = if n >= w as u64 {
                if neg { m(w) } else { 0 }
            } else {
                (a >> n | if neg { m(w) & !(m(w) >> n) } else { 0 }) & m(w)
            };
            assert_eq!(g, [shl, shr, sar, shr], "{ty} a={a:#x} n={n}");
        }
    }
}

#[test]
fn funnel_shifts_wrap_or_clamp() {
    let mut input = rows(320, 400);
    let mut r = rng(321);
    for row in &mut input {
        row[2] = if r.random_bool(0.5) { r.random_range(0..70) } else { r.random::<u32>() as u64 };
    }
    for (dir, mode) in [("l", "wrap"), ("l", "clamp"), ("r", "wrap"), ("r", "clamp")] {
        let got = op(&format!("shf.{dir}.{mode}.b32"), "b32", "b32", 3, &input);
        for (r, g) in input.iter().zip(got) {
            let (a, b, c) = (r[0] & m(32), r[1] & m(32), r[2] & m(32));
            let n = if mode == "clamp" { c.min(32) } else { c & 31 };
            // The PTX ISA's formulas, with shifts of 32 giving 0 (u64 arithmetic).
            let want =
                if dir == "l" { (b << n | a >> (32 - n)) & m(32) } else { (b << (32 - n) | a >> n) & m(32) };
            assert_eq!(g, want, "shf.{dir}.{mode} a={a:#x} b={b:#x} c={c}");
        }
    }
}

/// The PTX ISA's examples of immLut (`F(0xF0, 0xCC, 0xAA)`) and random tables, checked bit by
/// bit: result bit i is table bit `a_i * 4 + b_i * 2 + c_i`.
#[test]
fn lop3_applies_the_lookup_table() {
    let input = rows(330, 128);
    type F3 = fn(u64, u64, u64) -> u64;
    let cases: [(u64, F3); 4] = [
        (0x80, |a, b, c| a & b & c),
        (0xfe, |a, b, c| a | b | c),
        (0x40, |a, b, c| a & b & !c),
        (0x1a, |a, b, c| (a & b | c) ^ a),
    ];
    let decl = "  .reg .b32 %a<3>, %d;";
    for (lut, f) in cases {
        let body = format!(
            "  ld.global.u32 %a0, [%in];\n  ld.global.u32 %a1, [%in+8];\n  ld.global.u32 %a2, [%in+16];\n  lop3.b32 %d, %a0, %a1, %a2, {lut:#x};\n  st.global.u32 [%out], %d;"
        );
        for (r, g) in input.iter().zip(run_rows(decl, &body, &input)) {
            assert_eq!(g[0], f(r[0], r[1], r[2]) & m(32), "lut {lut:#x}");
        }
    }
    let mut rg = rng(331);
    for _ in 0..6 {
        let lut: u64 = rg.random_range(0..256);
        let body = format!(
            "  ld.global.u32 %a0, [%in];\n  ld.global.u32 %a1, [%in+8];\n  ld.global.u32 %a2, [%in+16];\n  lop3.b32 %d, %a0, %a1, %a2, {lut};\n  st.global.u32 [%out], %d;"
        );
        for (r, g) in input.iter().zip(run_rows(decl, &body, &input)) {
            let want = (0..32).fold(0, |d, i| {
                let idx = (r[0] >> i & 1) << 2 | (r[1] >> i & 1) << 1 | (r[2] >> i & 1);
                d | (lut >> idx & 1) << i
            });
            assert_eq!(g[0], want, "lut {lut:#x}");
        }
    }
}

/// `lop3.or.b32 d|p, a, b, c, lut, q`: `p = (d != 0) BoolOp q`.
#[test]
fn lop3_with_a_predicate_result() {
    let input: Vec<[u64; 4]> =
        vec![[0, 0, 0, 0], [0, 0, 0, 1], [1, 1, 1, 0], [1, 1, 1, 1], [0xf0, 0xff, 0x0f, 1]];
    let decl = "  .reg .b32 %a<4>, %d, %e, %v, %w;\n  .reg .pred %q, %p, %r;";
    let body = "  ld.global.u32 %a0, [%in];\n  ld.global.u32 %a1, [%in+8];\n  ld.global.u32 %a2, [%in+16];\n  ld.global.u32 %a3, [%in+24];
  setp.ne.u32 %q, %a3, 0;\n  lop3.or.b32 %d|%p, %a0, %a1, %a2, 0x80, %q;\n  lop3.and.b32 %e|%r, %a0, %a1, %a2, 0x80, !%q;
  selp.u32 %v, 1, 0, %p;\n  selp.u32 %w, 1, 0, %r;\n  st.global.v4.u32 [%out], {%d, %v, %e, %w};";
    for (r, g) in input.iter().zip(run_rows(decl, body, &input)) {
        let d = r[0] & r[1] & r[2];
        let q = r[3] != 0;
        assert_eq!(g[0], d | ((d != 0 || q) as u64) << 32);
        assert_eq!(g[1], d | ((d != 0 && !q) as u64) << 32);
    }
}
