//! atom and red against the PTX ISA ("atom", "red"): every operation and type applied in lane
//! order where lanes of one instruction share an address (global, shared and generic), the
//! documented inc/dec wrap and f32 flushing, and exact totals under contention from many CTAs
//! running on several host threads.

#![allow(clippy::needless_range_loop)] // index loops mirror the lane and element layouts

mod warp_common;

use kiln_softgpu::fault::FaultKind;
use kiln_softgpu::memory::SHARED_WINDOW;
use kiln_softgpu::testing::{Harness, kernel_ptx};
use rand::Rng;
use warp_common::*;

const THREADS: u32 = 256;
const CTAS: u32 = 64;

/// 64 CTAs of 256 threads: thread t applies `inst` (with `%r2` = its value `vals[t]`, `[%rd2]`
/// its counter `counters[t % 4]`) to one of four counters; returns the counters.
fn contend(h: &Harness, width: usize, init: u64, vals: &[u8], inst: &str) -> Vec<u64> {
    let ctr = h.buffer(&(0..4).flat_map(|_| init.to_le_bytes()[..width].to_vec()).collect::<Vec<_>>());
    let which = bytes(h, &(0..THREADS).map(|t| (t % 4) as u8 * width as u8).collect::<Vec<_>>());
    let tv = bytes(h, vals);
    let body = format!(
        "{REGS}  ld.global.u8 %rd2, [%tid.x+{which}];\n  ld.global.u8 %r2, [%tid.x+{tv}];\n  ld.global.u8 %rd3, [%tid.x+{tv}];\n  \
         {};\n  ret;",
        inst.replace("[%rd2]", &format!("[%rd2+{ctr}]"))
    );
    h.run(&kernel_ptx("", &body), "k", [CTAS, 1, 1], [THREADS, 1, 1], 0, &[]).unwrap();
    let raw = h.read(ctr, 4 * width);
    raw.chunks(width).map(|c| c.iter().rev().fold(0u64, |a, &b| a << 8 | b as u64)).collect()
}

#[test]
fn contended_global_atomics_give_exact_totals() {
    let h = Harness::new();
    let mut rng = rng(60);
    let vals: Vec<u8> = (0..THREADS).map(|_| rng.random()).collect();
    let per =
        |k: usize| (0..THREADS as usize).filter(|t| t % 4 == k).map(|t| vals[t] as u64).collect::<Vec<_>>();
    let n = CTAS as u64;
    let sums: Vec<u64> = (0..4).map(|k| per(k).iter().sum::<u64>() * n).collect();

    assert_eq!(
        contend(&h, 4, 5, &vals, "atom.global.add.u32 %r3, [%rd2], %r2"),
        sums.iter().map(|s| s + 5).collect::<Vec<_>>()
    );
    assert_eq!(
        contend(&h, 8, 1 << 40, &vals, "red.global.add.u64 [%rd2], %rd3"),
        sums.iter().map(|s| s + (1 << 40)).collect::<Vec<_>>()
    );
    assert_eq!(contend(&h, 4, 0, &vals, "red.relaxed.gpu.global.add.s32 [%rd2], %r2"), sums);
    // Small integers in f32 add exactly in any order.
    let f = contend(&h, 4, 0, &vals, "atom.global.add.f32 %f1, [%rd2], 0f40000000");
    assert!(f.iter().all(|&v| f32::from_bits(v as u32) == (THREADS / 4 * CTAS * 2) as f32), "{f:?}");
    let f = contend(&h, 8, 0, &vals, "atom.acq_rel.sys.global.add.f64 %rd4, [%rd2], 0d3FF8000000000000");
    assert!(f.iter().all(|&v| f64::from_bits(v) == (THREADS / 4 * CTAS) as f64 * 1.5), "{f:?}");
    // inc/dec with bound 99 cycle through 0..=99: 4096 steps per counter.
    let steps = (THREADS / 4 * CTAS) as u64;
    assert_eq!(contend(&h, 4, 0, &vals, "atom.global.inc.u32 %r3, [%rd2], 99"), vec![steps % 100; 4]);
    assert_eq!(
        contend(&h, 4, 0, &vals, "atom.global.dec.u32 %r3, [%rd2], 99"),
        vec![(100 - steps % 100) % 100; 4]
    );
    let maxes: Vec<u64> = (0..4).map(|k| *per(k).iter().max().unwrap()).collect();
    let mins: Vec<u64> = (0..4).map(|k| *per(k).iter().min().unwrap()).collect();
    assert_eq!(contend(&h, 4, 0, &vals, "atom.global.max.u32 %r3, [%rd2], %r2"), maxes);
    assert_eq!(contend(&h, 4, 1000, &vals, "red.global.min.u32 [%rd2], %r2"), mins);
    assert_eq!(
        contend(&h, 8, u64::MAX, &vals, "atom.global.min.s64 %rd4, [%rd2], %rd3"),
        vec![u64::MAX; 4],
        "-1 is the least"
    );
    let ors: Vec<u64> = (0..4).map(|k| per(k).iter().fold(0, |a, b| a | b)).collect();
    assert_eq!(contend(&h, 4, 0, &vals, "atom.global.or.b32 %r3, [%rd2], %r2"), ors);
    // Each value is xored in CTAS (an even number of) times.
    assert_eq!(contend(&h, 8, 0x77, &vals, "red.global.xor.b64 [%rd2], %rd3"), vec![0x77; 4]);
    assert_eq!(
        contend(&h, 4, 0xff, &vals, "atom.global.and.b32 %r3, [%rd2], %r2"),
        (0..4).map(|k| per(k).iter().fold(0xff, |a, b| a & b)).collect::<Vec<_>>()
    );
    let ex = contend(&h, 4, 0, &vals, "atom.global.exch.b32 %r3, [%rd2], %r2");
    assert!((0..4).all(|k| per(k).contains(&ex[k])), "exch leaves one of the stored values");
}

#[test]
fn contended_tickets_are_unique() {
    // Every thread takes a ticket from one counter and a unique output slot from a cursor
    // (both atom.add), then stores its ticket there: the tickets are 0..N exactly once.
    let h = Harness::new();
    let n = (CTAS * THREADS) as usize;
    let slots = h.uninit(8 * n as u64);
    let ctr = h.buffer_u32(&[0]);
    let cursor = table(&h, &[slots]);
    let body = format!(
        "{REGS}  atom.global.add.u32 %r1, [{ctr}], 1;\n  atom.global.add.u64 %rd1, [{cursor}], 8;\n  st.global.u64 [%rd1], %r1;\n  ret;"
    );
    h.run(&kernel_ptx("", &body), "k", [CTAS, 1, 1], [THREADS, 1, 1], 0, &[]).unwrap();
    let mut tickets = h.read_u64(slots, n);
    tickets.sort_unstable();
    assert!(tickets.iter().enumerate().all(|(i, &t)| t == i as u64));
    assert_eq!(h.read_u32(ctr, 1)[0] as usize, n);
}

/// The ISA's operation on the old value (`inc`, `dec`, `cas`, ... as in its Semantics).
fn model(op: &str, ty: &str, old: u64, b: u64, c: u64) -> u64 {
    let w = if ty.ends_with("64") { 64 } else { 32 };
    let m = if w == 64 { u64::MAX } else { 0xffff_ffff };
    let (b, c) = (b & m, c & m);
    let sx = |v: u64| if w == 32 { v as u32 as i32 as i64 } else { v as i64 };
    (match op {
        "add" => old.wrapping_add(b),
        "min" if ty.starts_with('s') => {
            if sx(old) <= sx(b) {
                old
            } else {
                b
            }
        }
        "max" if ty.starts_with('s') => {
            if sx(old) >= sx(b) {
                old
            } else {
                b
            }
        }
        "min" => old.min(b),
        "max" => old.max(b),
        "inc" => {
            if old >= b {
                0
            } else {
                old + 1
            }
        }
        "dec" => {
            if old == 0 || old > b {
                b
            } else {
                old - 1
            }
        }
        "and" => old & b,
        "or" => old | b,
        "xor" => old ^ b,
        "exch" => b,
        _ => {
            if old == b {
                c
            } else {
                old
            }
        }
    }) & m
}

/// One warp: lane l applies `atom.<space>.op.ty` at word `slot[l]` of an 8-word area (global,
/// shared or generic-to-shared), operands from random tables. Checks the returned old values
/// and the final words against the lane-order model.
fn lane_order(space: &str, op: &str, ty: &str, seed: u64) {
    let h = Harness::new();
    let mut rng = rng(seed);
    let w = if ty.ends_with("64") { 8 } else { 4 };
    let small = matches!(op, "inc" | "dec");
    let rand_val = |rng: &mut Rng64| -> u64 {
        let v: u64 = rng.random();
        let v = if small {
            v % 12
        } else if w == 4 {
            v & 0xffff_ffff
        } else {
            v
        };
        // Make cas hit sometimes: few distinct values.
        if op == "cas" { v % 3 } else { v }
    };
    let init: Vec<u64> = (0..8).map(|_| rand_val(&mut rng)).collect();
    let slot: Vec<u64> = (0..32).map(|_| rng.random_range(0..8)).collect();
    let bv: Vec<u64> = (0..32).map(|_| rand_val(&mut rng)).collect();
    let cv: Vec<u64> = (0..32).map(|_| rand_val(&mut rng)).collect();
    let area = table(&h, &init);
    let idx = idx8(&h);
    let addrs: Vec<u64> = slot
        .iter()
        .map(|&s| match space {
            "global" => area + 8 * s,
            "shared" => 8 * s,
            _ => SHARED_WINDOW + 8 * s,
        })
        .collect();
    let (ta, tb, tc) = (table(&h, &addrs), table(&h, &bv), table(&h, &cv));
    let o = out(&h, 32);
    let reg = if w == 8 { "%rd" } else { "%r" };
    let opnds = if op == "cas" { format!("{reg}11, {reg}12") } else { format!("{reg}11") };
    let sp = if space == "generic" { String::new() } else { format!(".{space}") };
    let shared_in = if space == "global" {
        String::new()
    } else {
        format!("  ld.global.u64 %rd20, [%rd1+{area}];\n  st.shared.u64 [%rd1], %rd20;\n")
    };
    let shared_out = if space == "global" {
        String::new()
    } else {
        format!("  ld.shared.u64 %rd20, [%rd1];\n  st.global.u64 [%rd1+{area}], %rd20;\n")
    };
    // Lanes 0-7 move the 8-word area into shared memory before and out after.
    let gate = bytes(&h, &(0..32).map(|l| (l >= 8) as u8).collect::<Vec<_>>());
    let body = format!(
        "{REGS}  .shared .align 8 .b8 smem[64];\n  ld.global.u8 %rd1, [%laneid+{idx}];\n  ld.global.u8 %p8, [%laneid+{gate}];\n  \
         ld.global.u64 %rd10, [%rd1+{ta}];\n  ld.global.{ty} {reg}11, [%rd1+{tb}];\n  ld.global.{ty} {reg}12, [%rd1+{tc}];\n  \
         @%p8 bra SKIP;\n{shared_in}SKIP:\n  bar.sync 0;\n  atom{sp}.{op}.{ty} {reg}13, [%rd10], {opnds};\n  \
         st.global.{ty} [%rd1+{o}], {reg}13;\n  bar.sync 0;\n  @%p8 bra END;\n{shared_out}END:\n  ret;"
    );
    h.run(&kernel_ptx("", &body), "k", [1, 1, 1], [32, 1, 1], 0, &[]).unwrap();
    let mut mem = init.clone();
    let got = h.read_u64(o, 32);
    for l in 0..32 {
        let s = slot[l] as usize;
        let old = mem[s];
        let mask = if w == 8 { u64::MAX } else { 0xffff_ffff };
        assert_eq!(got[l] & mask, old, "{space} {op}.{ty} lane {l}: returned old value");
        mem[s] = model(op, ty, old, bv[l], cv[l]) | (mem[s] & !mask);
    }
    let fin = h.read_u64(area, 8);
    let mask = if w == 8 { u64::MAX } else { 0xffff_ffff };
    for s in 0..8 {
        assert_eq!(fin[s] & mask, mem[s] & mask, "{space} {op}.{ty} word {s}");
    }
}

#[test]
fn every_operation_in_lane_order() {
    let ops: [(&str, &[&str]); 10] = [
        ("add", &["u32", "s32", "u64"]),
        ("min", &["u32", "s32", "u64", "s64"]),
        ("max", &["u32", "s32", "u64", "s64"]),
        ("inc", &["u32"]),
        ("dec", &["u32"]),
        ("and", &["b32", "b64"]),
        ("or", &["b32", "b64"]),
        ("xor", &["b32", "b64"]),
        ("exch", &["b32", "b64"]),
        ("cas", &["b32", "b64"]),
    ];
    let mut seed = 100;
    for space in ["global", "shared", "generic"] {
        for (op, tys) in ops {
            for ty in tys {
                seed += 1;
                lane_order(space, op, ty, seed);
            }
        }
    }
}

#[test]
fn f32_add_flushes_subnormals_on_global_only() {
    let h = Harness::new();
    let sub = 0x0000_0003u32; // a subnormal
    let g = h.buffer_u32(&[sub, 0]);
    let body = format!(
        "{REGS}  .shared .align 4 .b8 smem[8];\n  st.shared.u32 [0], {sub};\n  atom.global.add.f32 %f1, [{g}], 0f00000002;\n  \
         atom.shared.add.f32 %f2, [0], 0f00000002;\n  ld.shared.u32 %r1, [0];\n  st.global.u32 [{}], %r1;\n  ret;",
        g + 4
    );
    h.run(&kernel_ptx("", &body), "k", [1, 1, 1], [1, 1, 1], 0, &[]).unwrap();
    assert_eq!(h.read_u32(g, 2), vec![0, 5], "global flushes inputs and result, shared keeps them");
}

#[test]
fn packed_half_adds() {
    let h = Harness::new();
    let mut rng = rng(70);
    for ty in ["f16x2", "bf16x2", "f16", "bf16"] {
        let conv = |x: f32| -> u16 {
            if ty.starts_with("bf") {
                half::bf16::from_f32(x).to_bits()
            } else {
                half::f16::from_f32(x).to_bits()
            }
        };
        let back = |b: u16| -> f32 {
            if ty.starts_with("bf") {
                half::bf16::from_bits(b).to_f32()
            } else {
                half::f16::from_bits(b).to_f32()
            }
        };
        let vals: Vec<u32> = (0..32)
            .map(|_| {
                conv(rng.random_range(-4.0..4.0)) as u32 | (conv(rng.random_range(-4.0..4.0)) as u32) << 16
            })
            .collect();
        let (lo, hi) = (conv(1.25), conv(-3.5));
        let cell = h.buffer_u32(&[lo as u32 | (hi as u32) << 16]);
        let idx = idx8(&h);
        let tv = table32(&h, &vals);
        let (w, reg) = if ty.ends_with("x2") { ("b32", "%r1") } else { ("b16", "%r1") };
        let body = format!(
            "{REGS}  ld.global.u8 %rd1, [%laneid+{idx}];\n  ld.global.{w} {reg}, [%rd1+{tv}];\n  atom.global.add.noftz.{ty} %r2, [{cell}], {reg};\n  ret;"
        );
        h.run(&kernel_ptx("", &body), "k", [1, 1, 1], [32, 1, 1], 0, &[]).unwrap();
        let (mut a, mut b) = (lo, hi);
        for v in &vals {
            a = conv(back(a) + back(*v as u16));
            if ty.ends_with("x2") {
                b = conv(back(b) + back((*v >> 16) as u16));
            }
        }
        assert_eq!(h.read_u32(cell, 1)[0], a as u32 | (b as u32) << 16, "{ty}");
    }
}

#[test]
fn atomics_check_their_memory() {
    let h = Harness::new();
    let fresh = h.uninit(16);
    let body = format!("{REGS}  atom.global.add.u32 %r1, [{fresh}], 1;\n  ret;");
    let e = h.run(&kernel_ptx("", &body), "k", [1, 1, 1], [1, 1, 1], 0, &[]).unwrap_err();
    assert_eq!(e.fault_kind(), Some(FaultKind::UninitializedRead), "{e}");
    let body = format!("{REGS}  red.global.add.u32 [{}], 1;\n  ret;", fresh + 2);
    let e = h.run(&kernel_ptx("", &body), "k", [1, 1, 1], [1, 1, 1], 0, &[]).unwrap_err();
    assert_eq!(e.fault_kind(), Some(FaultKind::Misaligned), "{e}");
    let body = format!("{REGS}  .shared .align 4 .b8 smem[8];\n  atom.shared.add.u32 %r1, [16], 1;\n  ret;");
    let e = h.run(&kernel_ptx("", &body), "k", [1, 1, 1], [1, 1, 1], 0, &[]).unwrap_err();
    assert_eq!(e.fault_kind(), Some(FaultKind::IllegalAddress), "{e}");
    let e = h
        .load(&kernel_ptx("", &format!("{REGS}  atom.global.inc.u64 %rd1, [%rd2], 3;\n  ret;")))
        .unwrap_err();
    assert!(e.to_string().contains("inc"), "{e}");
}

#[test]
fn shared_atomics_of_several_warps_are_not_races() {
    // 8 warps add into one shared word without barriers between the atomics.
    let h = Harness::new();
    let o = h.buffer_u32(&[0]);
    let body = format!(
        "{REGS}  .shared .align 4 .b8 smem[4];\n  ld.global.u8 %p1, [%tid.x+{first}];\n  @!%p1 bra ADD;\n  st.shared.u32 [smem], 0;\nADD:\n  \
         bar.sync 0;\n  atom.shared::cta.add.u32 %r1, [smem], 3;\n  bar.sync 0;\n  @!%p1 bra END;\n  ld.shared.u32 %r2, [smem];\n  st.global.u32 [{o}], %r2;\nEND:\n  ret;",
        first = bytes(&h, &(0..256).map(|t| (t == 0) as u8).collect::<Vec<_>>())
    );
    let c = h.run(&kernel_ptx("", &body), "k", [1, 1, 1], [256, 1, 1], 0, &[]).unwrap();
    assert_eq!(h.read_u32(o, 1)[0], 768);
    // Each warp's atomic: 32 lanes on one word, a broadcast: one wavefront.
    assert!(c.bank_conflicts == 0, "{c}");
}
