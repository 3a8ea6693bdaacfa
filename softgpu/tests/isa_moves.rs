//! Moves and address conversion (PTX ISA §9.7.9.1-2 `mov`, §9.7.9.19 `isspacep`, §9.7.9.20
//! `cvta`): every type, immediates, special registers, vector pack/unpack (first element in
//! the low bits), and generic addresses of shared, local and global memory.

mod alu_util;

use alu_util::{rows, run_rows, trunc};
use kiln_softgpu::testing::{Harness, kernel_ptx};

#[test]
fn mov_registers_and_immediates_of_every_type() {
    let input = rows(500, 100);
    for (ty, reg, w) in [
        ("b16", "b16", 16),
        ("u16", "b16", 16),
        ("s32", "b32", 32),
        ("b32", "b32", 32),
        ("u64", "b64", 64),
        ("f32", "f32", 32),
        ("f64", "f64", 64),
    ] {
        let decl = format!("  .reg .{reg} %a, %d;");
        let body = format!("  ld.global.{reg} %a, [%in];\n  mov.{ty} %d, %a;\n  st.global.{reg} [%out], %d;");
        for (r, g) in input.iter().zip(run_rows(&decl, &body, &input)) {
            assert_eq!(g[0], r[0] & trunc(-1, w), "mov.{ty}");
        }
    }
    let decl = "  .reg .b16 %h;\n  .reg .b32 %r;\n  .reg .b64 %rd;\n  .reg .f32 %f;\n  .reg .f64 %fd;\n  .reg .pred %p;\n  .reg .b32 %pv;";
    let body = "  mov.b16 %h, -2;\n  mov.s32 %r, -5;\n  mov.u64 %rd, -7;\n  mov.f32 %f, 0d3FF8000000000000;\n  mov.f64 %fd, 0f40000000;
  mov.pred %p, 1;\n  selp.u32 %pv, 7, 9, %p;
  st.global.b16 [%out], %h;\n  st.global.b32 [%out+4], %r;\n  st.global.b64 [%out+8], %rd;\n  st.global.f32 [%out+16], %f;\n  st.global.f64 [%out+24], %fd;";
    let g = run_rows(decl, body, &[[0; 4]])[0];
    assert_eq!(g[0], 0xffff_fffb_0000_fffe);
    assert_eq!(g[1], (-7i64) as u64);
    assert_eq!(g[2], 1.5f32.to_bits() as u64);
    assert_eq!(g[3], 2f64.to_bits());
    let body =
        "  mov.pred %p, 0;\n  mov.pred %p, %p;\n  selp.u32 %pv, 7, 9, %p;\n  st.global.u32 [%out], %pv;";
    assert_eq!(run_rows(decl, body, &[[0; 4]])[0][0], 9);
}

#[test]
fn mov_reads_special_registers() {
    let input = vec![[0u64; 4]; 70];
    let decl = "  .reg .b32 %t, %l, %n, %c;";
    let body = "  mov.u32 %t, %tid.x;\n  mov.u32 %l, %laneid;\n  mov.u32 %n, %ntid.x;\n  mov.u32 %c, %ctaid.x;\n  st.global.v4.u32 [%out], {%t, %l, %n, %c};";
    for (k, g) in run_rows(decl, body, &input).iter().enumerate() {
        assert_eq!(g[..2], [k as u64 | (k as u64 % 32) << 32, 70]);
    }
}

/// `mov.bN d, {a, b, ...}` packs with the first element lowest; `mov.bN {a, b, ...}, s`
/// unpacks; elements may be immediates, destinations `_`.
#[test]
fn vector_moves_pack_and_unpack() {
    let input = rows(510, 200);
    let decl = "  .reg .b16 %h<4>;\n  .reg .b32 %r<4>, %p32, %q32, %z;\n  .reg .b64 %x, %p64, %q64;";
    let body = "  ld.global.u64 %x, [%in];\n  mov.b64 {%h0, %h1, %h2, %h3}, %x;\n  mov.b32 %p32, {%h1, %h2};\n  mov.b64 {%r0, %r1}, %x;
  mov.b64 %p64, {%r1, %r0};\n  mov.b64 %q64, {%h3, %h2, %h1, %h0};\n  mov.b32 %q32, {0, %h3};\n  mov.b32 {_, %h0}, %r0;
  mov.b32 {%r2, _, %r3, _}, %r1;\n  mov.b32 %z, {%h0, %h0};\n  mov.b16 %h1, {%r2, %r3};
  st.global.v2.u32 [%out], {%p32, %q32};\n  st.global.u64 [%out+8], %p64;\n  st.global.u64 [%out+16], %q64;\n  st.global.v2.u32 [%out+24], {%z, %r3};
  st.global.b16 [%out+28], %h1;";
    for (r, g) in input.iter().zip(run_rows(decl, body, &input)) {
        let x = r[0];
        let h = |i: u32| x >> (16 * i) & 0xffff;
        let lo = x & 0xffff_ffff;
        let hi = x >> 32;
        assert_eq!(g[0], (h(1) | h(2) << 16) | (h(3) << 16) << 32, "{x:#x}");
        assert_eq!(g[1], hi | lo << 32);
        assert_eq!(g[2], h(3) | h(2) << 16 | h(1) << 32 | h(0) << 48);
        // {_, %h0} = high half of lo; %z = {h0, h0}; bytes 0 and 2 of hi packed as b16.
        let h0 = lo >> 16;
        let (b0, b2) = (hi & 0xff, hi >> 16 & 0xff);
        assert_eq!(g[3], (h0 | h0 << 16) | (b0 | b2 << 8) << 32, "{x:#x}");
    }
}

/// Generic addresses of shared and local variables go through their windows and back, reach
/// the same bytes as the space-specific accesses, and `isspacep` tells the spaces apart.
#[test]
fn cvta_round_trips_and_isspacep() {
    let input = rows(520, 64);
    let decl = "  .shared .align 8 .b8 sm[512];\n  .local .align 8 .b8 lb[16];
  .reg .b64 %s, %g, %o, %l, %gl, %t, %tl, %x, %gx;\n  .reg .b32 %v, %w, %wl, %f;\n  .reg .pred %p<8>;\n  .reg .b32 %pv<8>;";
    let body = "  ld.global.u32 %v, [%in];\n  mov.u64 %s, sm;\n  mul.wide.u32 %o, %tix, 4;\n  add.s64 %s, %s, %o;
  cvta.shared.u64 %g, %s;\n  st.u32 [%g], %v;\n  ld.shared.u32 %w, [%s];\n  cvta.to.shared.u64 %t, %g;
  mov.u64 %l, lb;\n  cvta.local.u64 %gl, %l;\n  add.s32 %f, %v, 1;\n  st.u32 [%gl+4], %f;\n  ld.local.u32 %wl, [%l+4];\n  cvta.to.local.u64 %tl, %gl;
  cvta.to.global.u64 %x, %in;\n  cvta.global.u64 %gx, %in;
  isspacep.shared %p0, %g;\n  isspacep.global %p1, %g;\n  isspacep.local %p2, %gl;\n  isspacep.shared %p3, %gl;
  isspacep.global %p4, %gx;\n  isspacep.local %p5, %gx;\n  isspacep.const %p6, %gx;\n  isspacep.param %p7, %gx;
  selp.u32 %pv0, 1, 0, %p0;\n  selp.u32 %pv1, 2, 0, %p1;\n  selp.u32 %pv2, 4, 0, %p2;\n  selp.u32 %pv3, 8, 0, %p3;
  selp.u32 %pv4, 16, 0, %p4;\n  selp.u32 %pv5, 32, 0, %p5;\n  selp.u32 %pv6, 64, 0, %p6;\n  selp.u32 %pv7, 128, 0, %p7;
  or.b32 %pv0, %pv0, %pv1;\n  or.b32 %pv0, %pv0, %pv2;\n  or.b32 %pv0, %pv0, %pv3;\n  or.b32 %pv0, %pv0, %pv4;
  or.b32 %pv0, %pv0, %pv5;\n  or.b32 %pv0, %pv0, %pv6;\n  or.b32 %pv0, %pv0, %pv7;
  sub.s64 %t, %t, %s;\n  sub.s64 %tl, %tl, %l;\n  sub.s64 %x, %x, %gx;
  st.global.v2.u32 [%out], {%w, %wl};\n  st.global.u32 [%out+8], %pv0;\n  st.global.u64 [%out+16], %t;\n  or.b64 %x, %x, %tl;\n  st.global.u64 [%out+24], %x;";
    for (r, g) in input.iter().zip(run_rows(decl, body, &input)) {
        let v = r[0] & 0xffff_ffff;
        assert_eq!(g[0], v | ((v + 1) & 0xffff_ffff) << 32, "shared and local bytes");
        // shared: yes; global: no; local: yes; shared(local addr): no; global: yes; local: no;
        // const: yes (same window as global here); param: never.
        assert_eq!(g[1], 1 | 4 | 16 | 64);
        assert_eq!(g[2], 0, "cvta.to.shared undoes cvta.shared");
        assert_eq!(g[3], 0, "global identity and local round trip");
    }
    // The 32-bit form of cvta.to: the shared offset fits.
    let decl = "  .shared .align 4 .b8 sm2[64];\n  .reg .b64 %g;\n  .reg .b32 %s;";
    let body = "  cvta.shared.u64 %g, sm2;\n  cvta.to.shared.u32 %s, %g;\n  st.global.u32 [%out], %s;";
    assert_eq!(run_rows(decl, body, &[[0; 4]])[0][0], 0);
}

#[test]
fn unsupported_forms_are_refused_at_load() {
    let h = Harness::new();
    for (line, what) in [
        ("cvta.param.u64 %rd1, p0;", "no generic window"),
        ("cvta.shared.u32 %r1, %r1;", "32-bit generic"),
        ("mov.b64 {%r1, %r1, %r1}, %rd1;", "3 vector elements"),
        ("add.sat.u32 %r1, %r1, %r1;", "modifiers"),
        ("mul.wide.u64 %rd1, %rd1, %rd1;", "no 64-bit form"),
        ("setp.lo.f32 %p1, %f1, %f1;", "comparison"),
        ("setp.gtu.s32 %p1, %r1, %r1;", "floating-point"),
        ("shf.l.b32 %r1, %r1, %r1, %r1;", ".wrap/.clamp"),
        ("lop3.b32 %r1, %r1, %r1, %r1, %r1;", "immediate"),
        ("abs.u32 %r1, %r1;", "signed"),
    ] {
        let body = format!(
            "  .reg .b32 %r<2>;\n  .reg .b64 %rd<2>;\n  .reg .f32 %f<2>;\n  .reg .pred %p<2>;\n  {line}\n  ret;"
        );
        let e =
            h.load(&kernel_ptx(".param .u64 p0", &body)).err().unwrap_or_else(|| panic!("`{line}` loaded"));
        let msg = e.to_string();
        assert!(msg.contains(what), "`{line}`: {msg}");
    }
}
