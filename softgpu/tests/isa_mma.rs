//! mma.sync (m16n8k16 and m16n8k8 with bf16 and f16 inputs), ldmatrix and stmatrix against
//! the PTX ISA's fragment layouts ("Matrix Fragments for mma.m16n8k16 / mma.m16n8k8 with
//! floating point type", "ldmatrix", "stmatrix"), on random values.

#![allow(clippy::needless_range_loop)] // index loops mirror the lane and element layouts

mod warp_common;

use half::{bf16, f16};
use kiln_softgpu::testing::{Harness, kernel_ptx};
use rand::Rng;
use warp_common::*;

/// Per-lane registers of 32-bit values: `regs[lane][r]`.
type Frags = Vec<Vec<u32>>;

/// Runs `inst` on one warp, with input register groups loaded from tables (`%r<base+i>` for
/// the registers of group g, named in `inst` as `{G0}`, `{G1}`, ... for the group's register
/// list) and the output group's registers stored; returns the outputs per lane.
fn run_warp(
    h: &Harness,
    inputs: &[&Frags],
    outputs: usize,
    inst: &str,
    setup: &str,
) -> (Frags, kiln_softgpu::exec::Counters) {
    let idx = idx8(h);
    let mut body = format!("{REGS}  ld.global.u8 %rd1, [%laneid+{idx}];\n{setup}");
    let mut inst = inst.to_owned();
    let mut next = 1;
    for (g, frags) in inputs.iter().enumerate() {
        let n = frags[0].len();
        let mut names = Vec::new();
        for r in 0..n {
            let t = table32(h, &frags.iter().map(|f| f[r]).collect::<Vec<_>>());
            body += &format!("  ld.global.u32 %r{next}, [%rd1+{t}];\n");
            names.push(format!("%r{next}"));
            next += 1;
        }
        inst = inst.replace(&format!("{{G{g}}}"), &format!("{{{}}}", names.join(", ")));
    }
    let o = out(h, 32 * outputs);
    let names: Vec<String> = (0..outputs).map(|r| format!("%r{}", next + r)).collect();
    inst = inst.replace("{OUT}", &format!("{{{}}}", names.join(", ")));
    body += &format!("  {inst};\n");
    for (r, n) in names.iter().enumerate() {
        body += &format!("  st.global.u64 [%rd1+{}], {n};\n", o + 256 * r as u64);
    }
    body += "  ret;";
    let counters = h.run(&kernel_ptx("", &body), "k", [1, 1, 1], [32, 1, 1], 0, &[]).unwrap();
    let flat = h.read_u64(o, 32 * outputs);
    ((0..32).map(|l| (0..outputs).map(|r| flat[r * 32 + l] as u32).collect()).collect(), counters)
}

/// The fragment layouts, as the ISA states them (groupID = lane >> 2, threadID_in_group =
/// lane % 4), for element `i` of a lane: (row, column).
fn a_pos(k: usize, lane: usize, i: usize) -> (usize, usize) {
    let (g, t) = (lane >> 2, lane % 4);
    let row = if i < 2 || (4..6).contains(&i) { g } else { g + 8 };
    let col = t * 2 + (i & 1) + if k == 16 && i >= 4 { 8 } else { 0 };
    (row, col)
}
fn b_pos(lane: usize, i: usize) -> (usize, usize) {
    let (g, t) = (lane >> 2, lane % 4);
    (t * 2 + (i & 1) + if i >= 2 { 8 } else { 0 }, g)
}
fn c_pos(lane: usize, i: usize) -> (usize, usize) {
    let (g, t) = (lane >> 2, lane % 4);
    (if i < 2 { g } else { g + 8 }, t * 2 + (i & 1))
}

/// Packs 16-bit elements two per register, the lower-numbered element in the low half.
fn pack(elems: &[u16]) -> Vec<u32> {
    elems.chunks(2).map(|p| p[0] as u32 | (p[1] as u32) << 16).collect()
}

fn check_mma(k: usize, ab: &str, cty: &str, dty: &str, seed: u64) {
    let h = Harness::new();
    let mut rng = rng(seed);
    let half_val = |rng: &mut Rng64| -> (u16, f32) {
        let x: f32 = rng.random_range(-2.0..2.0);
        if ab == "bf16" {
            let v = bf16::from_f32(x);
            (v.to_bits(), v.to_f32())
        } else {
            let v = f16::from_f32(x);
            (v.to_bits(), v.to_f32())
        }
    };
    let a: Vec<Vec<(u16, f32)>> = (0..16).map(|_| (0..k).map(|_| half_val(&mut rng)).collect()).collect();
    let b: Vec<Vec<(u16, f32)>> = (0..k).map(|_| (0..8).map(|_| half_val(&mut rng)).collect()).collect();
    let c: Vec<Vec<f32>> = (0..16)
        .map(|_| {
            (0..8)
                .map(|_| {
                    let x: f32 = rng.random_range(-8.0..8.0);
                    if cty == "f16" { f16::from_f32(x).to_f32() } else { x }
                })
                .collect()
        })
        .collect();
    // Scatter into fragments by the documented layout.
    let fa: Frags = (0..32)
        .map(|l| {
            pack(
                &(0..k / 2)
                    .map(|i| {
                        let (r, cc) = a_pos(k, l, i);
                        a[r][cc].0
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let fb: Frags = (0..32)
        .map(|l| {
            pack(
                &(0..k / 4)
                    .map(|i| {
                        let (r, cc) = b_pos(l, i);
                        b[r][cc].0
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let fc: Frags = (0..32)
        .map(|l| {
            let e: Vec<f32> = (0..4)
                .map(|i| {
                    let (r, cc) = c_pos(l, i);
                    c[r][cc]
                })
                .collect();
            if cty == "f16" {
                pack(&e.iter().map(|&x| f16::from_f32(x).to_bits()).collect::<Vec<_>>())
            } else {
                e.iter().map(|x| x.to_bits()).collect()
            }
        })
        .collect();
    let outputs = if dty == "f16" { 2 } else { 4 };
    let inst =
        format!("mma.sync.aligned.m16n8k{k}.row.col.{dty}.{ab}.{ab}.{cty} {{OUT}}, {{G0}}, {{G1}}, {{G2}}");
    let (d, counters) = run_warp(&h, &[&fa, &fb, &fc], outputs, &inst, "");
    assert_eq!(counters.warp_instructions[0], 1, "one mma counted");
    // The host product: f32, C plus the products in increasing k.
    for l in 0..32 {
        for i in 0..4 {
            let (m, n) = c_pos(l, i);
            let mut acc = c[m][n];
            for kk in 0..k {
                acc += a[m][kk].1 * b[kk][n].1;
            }
            let got = if dty == "f16" {
                let w = d[l][i / 2];
                f16::from_bits(if i % 2 == 0 { w as u16 } else { (w >> 16) as u16 }).to_f32()
            } else {
                f32::from_bits(d[l][i])
            };
            let want = if dty == "f16" { f16::from_f32(acc).to_f32() } else { acc };
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "m16n8k{k} {dty}.{ab}.{cty}: D[{m}][{n}] lane {l} reg {i}: {got} vs {want}"
            );
            // And a sanity bound against an f64 product.
            let exact: f64 =
                c[m][n] as f64 + (0..k).map(|kk| a[m][kk].1 as f64 * b[kk][n].1 as f64).sum::<f64>();
            assert!((got as f64 - exact).abs() < 1e-2 + exact.abs() * 1e-2, "{got} vs {exact}");
        }
    }
}

#[test]
fn mma_m16n8k16_bf16_f32() {
    for seed in 0..4 {
        check_mma(16, "bf16", "f32", "f32", seed);
    }
}

#[test]
fn mma_m16n8k16_f16_f32() {
    for seed in 10..14 {
        check_mma(16, "f16", "f32", "f32", seed);
    }
}

#[test]
fn mma_m16n8k8() {
    check_mma(8, "bf16", "f32", "f32", 20);
    check_mma(8, "f16", "f32", "f32", 21);
    check_mma(8, "f16", "f16", "f16", 22);
}

#[test]
fn mma_with_f16_accumulators() {
    check_mma(16, "f16", "f16", "f16", 30);
    check_mma(16, "f16", "f16", "f32", 31);
    check_mma(16, "f16", "f32", "f16", 32);
}

#[test]
fn unsupported_mma_forms_are_refused_at_load() {
    let h = Harness::new();
    let body = format!(
        "{REGS}  mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {{%f1,%f2,%f3,%f4}}, {{%r1,%r2,%r3,%r4}}, {{%r5,%r6}}, {{%f1,%f2,%f3,%f4}};\n  ret;"
    );
    let e = h.load(&kernel_ptx("", &body)).unwrap_err().to_string();
    assert!(e.contains("mma") && e.contains("tf32"), "{e}");
}

/// Shared memory of 64 slots of 16 bytes, filled with random b16 values, and matrices whose
/// row r of matrix m lies at slot `rows[8m + r]`. Returns (setup PTX, slots, row table).
fn shared_rows(h: &Harness, rng: &mut Rng64, rows: &[usize]) -> (String, Vec<[u16; 8]>, u64) {
    let slots: Vec<[u16; 8]> = (0..64).map(|_| std::array::from_fn(|_| rng.random())).collect();
    let src =
        h.buffer(&slots.iter().flat_map(|s| s.iter().flat_map(|e| e.to_le_bytes())).collect::<Vec<_>>());
    let gsrc = table(h, &(0..32).map(|l| src + 16 * l).collect::<Vec<_>>());
    let sdst = table(h, &(0..32).map(|l| 16 * l).collect::<Vec<_>>());
    let rowt = table(h, &rows.iter().map(|&s| 16 * s as u64).collect::<Vec<_>>());
    let setup = format!(
        "  ld.global.u64 %rd2, [%rd1+{gsrc}];\n  ld.global.u64 %rd3, [%rd1+{sdst}];\n  \
         ld.global.v4.u32 {{%r40, %r41, %r42, %r43}}, [%rd2];\n  st.shared.v4.u32 [%rd3], {{%r40, %r41, %r42, %r43}};\n  \
         ld.global.v4.u32 {{%r40, %r41, %r42, %r43}}, [%rd2+512];\n  st.shared.v4.u32 [%rd3+512], {{%r40, %r41, %r42, %r43}};\n  \
         ld.global.u64 %rd4, [%rd1+{rowt}];\n"
    );
    (setup, slots, rowt)
}

const SMEM: &str = "  .shared .align 16 .b8 smem[1024];\n";

#[test]
fn ldmatrix_layouts() {
    let h = Harness::new();
    let mut rng = rng(40);
    for num in [1usize, 2, 4] {
        for trans in [false, true] {
            // Row addresses: a random choice of distinct slots.
            let mut rows: Vec<usize> = (0..64).collect();
            for i in 0..32 {
                let j = rng.random_range(i..64);
                rows.swap(i, j);
            }
            rows.truncate(32);
            let (setup, slots, _) = shared_rows(&h, &mut rng, &rows);
            let setup = format!("{SMEM}{setup}");
            let t = if trans { ".trans" } else { "" };
            let inst = format!("ldmatrix.sync.aligned.m8n8.x{num}{t}.shared.b16 {{OUT}}, [%rd4]");
            let (got, counters) = run_warp(&h, &[], num, &inst, &setup);
            assert_eq!(counters.warp_instructions[4], 1, "one ldmatrix counted");
            let elem = |m: usize, r: usize, c: usize| slots[rows[8 * m + r]][c];
            for lane in 0..32 {
                for m in 0..num {
                    let (lo, hi) = if trans {
                        (elem(m, 2 * (lane % 4), lane / 4), elem(m, 2 * (lane % 4) + 1, lane / 4))
                    } else {
                        (elem(m, lane / 4, 2 * (lane % 4)), elem(m, lane / 4, 2 * (lane % 4) + 1))
                    };
                    assert_eq!(
                        got[lane][m],
                        lo as u32 | (hi as u32) << 16,
                        "x{num} trans {trans} lane {lane} matrix {m}"
                    );
                }
            }
        }
    }
}

#[test]
fn ldmatrix_bank_conflicts() {
    let h = Harness::new();
    let mut rng = rng(41);
    // Contiguous rows: each matrix is 128 conflict-free bytes.
    let (setup, ..) = shared_rows(&h, &mut rng, &(0..32).collect::<Vec<_>>());
    let inst = "ldmatrix.sync.aligned.m8n8.x4.shared.b16 {OUT}, [%rd4]";
    let (_, c) = run_warp(&h, &[], 4, inst, &format!("{SMEM}{setup}"));
    // The two setup stores are conflict-free too (4 wavefronts each).
    assert_eq!((c.shared_wavefronts, c.bank_conflicts), (12, 0));
    // Rows 128 bytes apart: the 8 rows of a matrix share banks 0-3: 8 wavefronts each.
    let (setup, ..) = shared_rows(&h, &mut rng, &(0..32).map(|r| (r % 8) * 8 + r / 8).collect::<Vec<_>>());
    let (_, c) = run_warp(&h, &[], 4, inst, &format!("{SMEM}{setup}"));
    assert_eq!((c.shared_wavefronts, c.bank_conflicts), (8 + 32, 28));
}

#[test]
fn stmatrix_inverts_ldmatrix_layout() {
    let h = Harness::new();
    let mut rng = rng(42);
    for trans in [false, true] {
        let frags: Frags = (0..32).map(|_| (0..4).map(|_| rng.random()).collect()).collect();
        // Store to rows at slots 2r (every other slot), then read the 64 slots back.
        let rows: Vec<usize> = (0..32).map(|r| 2 * r).collect();
        let (setup, _, _) = shared_rows(&h, &mut rng, &rows);
        let t = if trans { ".trans" } else { "" };
        let idx = idx8(&h);
        let gout = h.uninit(1024);
        let gdst = table(&h, &(0..32).map(|l| gout + 16 * l).collect::<Vec<_>>());
        let mut body = format!("{REGS}{SMEM}  ld.global.u8 %rd1, [%laneid+{idx}];\n{setup}");
        for r in 0..4 {
            let tb = table32(&h, &frags.iter().map(|f| f[r]).collect::<Vec<_>>());
            body += &format!("  ld.global.u32 %r{}, [%rd1+{tb}];\n", r + 1);
        }
        body += &format!(
            "  stmatrix.sync.aligned.m8n8.x4{t}.shared.b16 [%rd4], {{%r1, %r2, %r3, %r4}};\n  ld.global.u64 %rd5, [%rd1+{gdst}];\n  \
             ld.shared.v4.u32 {{%r40, %r41, %r42, %r43}}, [%rd3];\n  st.global.v4.u32 [%rd5], {{%r40, %r41, %r42, %r43}};\n  \
             ld.shared.v4.u32 {{%r40, %r41, %r42, %r43}}, [%rd3+512];\n  st.global.v4.u32 [%rd5+512], {{%r40, %r41, %r42, %r43}};\n  ret;"
        );
        h.run(&kernel_ptx("", &body), "k", [1, 1, 1], [32, 1, 1], 0, &[]).unwrap();
        let bytes = h.read(gout, 1024);
        let elem = |m: usize, r: usize, c: usize| {
            let o = 16 * rows[8 * m + r] + 2 * c;
            u16::from_le_bytes([bytes[o], bytes[o + 1]])
        };
        for lane in 0..32 {
            for m in 0..4 {
                let (lo, hi) = if trans {
                    (elem(m, 2 * (lane % 4), lane / 4), elem(m, 2 * (lane % 4) + 1, lane / 4))
                } else {
                    (elem(m, lane / 4, 2 * (lane % 4)), elem(m, lane / 4, 2 * (lane % 4) + 1))
                };
                assert_eq!(
                    lo as u32 | (hi as u32) << 16,
                    frags[lane][m],
                    "trans {trans} lane {lane} matrix {m}"
                );
            }
        }
    }
}

#[test]
fn shared_loads_count_bank_conflicts() {
    // After the conflict-free setup stores (2 x 4 wavefronts) and a `bar.warp.sync` (lanes read
    // each other's words, which needs ordering): 4-byte loads with a stride of
    // 2 words (2 wavefronts), and through generic addresses with a stride of 8 words (lanes
    // fall in 4 banks, 8 distinct words each: 8 wavefronts).
    let h = Harness::new();
    let mut rng = rng(43);
    let (setup, ..) = shared_rows(&h, &mut rng, &(0..32).collect::<Vec<_>>());
    let s8 = table(&h, &(0..32).map(|l| 8 * l).collect::<Vec<_>>());
    let g32 = table(&h, &(0..32).map(|l| kiln_softgpu::memory::SHARED_WINDOW + 32 * l).collect::<Vec<_>>());
    let setup = format!(
        "{SMEM}{setup}  ld.global.u64 %rd6, [%rd1+{s8}];\n  ld.global.u64 %rd7, [%rd1+{g32}];\n  \
         bar.warp.sync -1;\n  ld.shared.u32 %r30, [%rd6];\n  ld.u32 %r31, [%rd7];\n"
    );
    let (_, c) = run_warp(&h, &[], 1, "ldmatrix.sync.aligned.m8n8.x1.shared.b16 {OUT}, [%rd4]", &setup);
    assert_eq!((c.shared_wavefronts, c.bank_conflicts), (8 + 2 + 8 + 1, 1 + 7));
}
