//! Device functions: `call` with parameters and return values passed through `.param` space,
//! a callee with its own local-memory stack frame, and calls from diverged lanes.

use kiln_softgpu::testing::{Arg, Harness};

/// `twice_plus(x, y)` returns {2x + y, x} through a 16-byte return parameter, using a local
/// array as scratch, as NVRTC's code does for the trig slow path.
const PTX: &str = r#"
.version 8.8
.target sm_90
.address_size 64
.func (.param .align 8 .b8 ret0[16]) twice_plus(.param .b64 x_param, .param .b32 y_param)
{
    .local .align 8 .b8 depot[16];
    .reg .b64 %SP;
    .reg .b64 %rd<6>;
    .reg .b32 %r<3>;
    mov.u64 %SP, depot;
    ld.param.u64 %rd1, [x_param];
    ld.param.u32 %r1, [y_param];
    st.local.u64 [%SP], %rd1;
    st.local.u64 [%SP+8], %rd1;
    ld.local.u64 %rd2, [%SP];
    ld.local.u64 %rd3, [%SP+8];
    add.s64 %rd4, %rd2, %rd3;
    cvt.u64.u32 %rd5, %r1;
    add.s64 %rd4, %rd4, %rd5;
    st.param.b64 [ret0+0], %rd4;
    st.param.b64 [ret0+8], %rd1;
    ret;
}
.visible .entry k(.param .u64 out)
{
    .reg .pred %p<2>;
    .reg .b32 %r<4>;
    .reg .b64 %rd<10>;
    ld.param.u64 %rd1, [out];
    mov.u32 %r1, %tid.x;
    cvt.u64.u32 %rd2, %r1;
    mov.u64 %rd6, 0;
    mov.u64 %rd7, 0;
    // Odd lanes call; even lanes skip: the call runs in a diverged group.
    and.b32 %r2, %r1, 1;
    setp.eq.s32 %p1, %r2, 0;
    @%p1 bra $L_skip;
    {
    .param .b64 param0;
    st.param.b64 [param0+0], %rd2;
    .param .b32 param1;
    st.param.b32 [param1+0], 1000;
    .param .align 8 .b8 retval0[16];
    call.uni (retval0), twice_plus, (param0, param1);
    ld.param.b64 %rd6, [retval0+0];
    ld.param.b64 %rd7, [retval0+8];
    }
$L_skip:
    mul.wide.u32 %rd3, %r1, 16;
    add.s64 %rd4, %rd1, %rd3;
    st.global.u64 [%rd4], %rd6;
    st.global.u64 [%rd4+8], %rd7;
    ret;
}
"#;

#[test]
fn calls_pass_parameters_and_results_through_param_space() {
    let h = Harness::new();
    let out = h.buffer(&[0u8; 64 * 16]);
    h.run(PTX, "k", [1, 1, 1], [64, 1, 1], 0, &[Arg::U64(out)]).unwrap();
    let got = h.read_u64(out, 128);
    for t in 0..64u64 {
        let want = if t % 2 == 1 { [2 * t + 1000, t] } else { [0, 0] };
        assert_eq!([got[2 * t as usize], got[2 * t as usize + 1]], want, "thread {t}");
    }
}

#[test]
fn recursion_is_refused_at_load() {
    let h = Harness::new();
    let ptx = r#"
.version 8.8
.target sm_90
.address_size 64
.func f()
{
    call.uni f, ();
    ret;
}
.visible .entry k()
{
    call.uni f, ();
    ret;
}
"#;
    let e = h.load(ptx).unwrap_err().to_string();
    assert!(e.contains("recursive"), "{e}");
}
