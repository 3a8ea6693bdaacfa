// kernels/cuda/common.cuh: helpers shared by the kernel families.
//
// The compile step (kernels/src/compile.rs) hands this file to NVRTC as an embedded header,
// so a family includes it with `#include "common.cuh"`; it is not looked up on disk.
// Everything lives in namespace `kiln` and is `__device__ __forceinline__`.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace kiln {

// ---- storage <-> f32 -------------------------------------------------------------------------

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

// Round-to-nearest-even from f32, as the CPU backend's conversions (half::f16/bf16::from_f32).
template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

// ---- 16-byte vectors ---------------------------------------------------------------------------

// N elements of T loaded or stored as one access of sizeof(T) * N bytes (16 for 8 halves).
// The address must be aligned to that size: launchers check the base pointers and the kernels
// only form vector addresses at multiples of N elements.
template <typename T, int N> struct alignas(sizeof(T) * N) Vec {
    T v[N];
};

template <typename T, int N> __device__ __forceinline__ Vec<T, N> load_vec(const T* p) {
    return *reinterpret_cast<const Vec<T, N>*>(p);
}

template <typename T, int N> __device__ __forceinline__ void store_vec(T* p, const Vec<T, N>& v) {
    *reinterpret_cast<Vec<T, N>*>(p) = v;
}

// ---- activations (f32) -------------------------------------------------------------------------

// GELU, exact erf form (PyTorch's default F.gelu).
__device__ __forceinline__ float gelu_f32(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

// SiLU: x * sigmoid(x) = x / (1 + exp(-x)); expf is accurate to 2 ulp, no fast-math.
__device__ __forceinline__ float silu_f32(float x) { return x / (1.0f + expf(-x)); }

// ---- reductions --------------------------------------------------------------------------------

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// Running (count, mean, M2) of Welford's algorithm; combined with Chan et al.'s formula.
struct Welford {
    float count;
    float mean;
    float m2;
};

__device__ __forceinline__ Welford welford_merge(Welford a, Welford b) {
    float n = a.count + b.count;
    if (b.count == 0.0f) return a;
    if (a.count == 0.0f) return b;
    float delta = b.mean - a.mean;
    float wb = b.count / n;
    Welford r;
    r.count = n;
    r.mean = a.mean + delta * wb;
    r.m2 = a.m2 + b.m2 + delta * delta * a.count * wb;
    return r;
}

// Merges the Welford states of the 32 lanes of a warp; every lane gets the total.
__device__ __forceinline__ Welford warp_welford(Welford w) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        Welford o;
        o.count = __shfl_xor_sync(0xffffffffu, w.count, offset);
        o.mean = __shfl_xor_sync(0xffffffffu, w.mean, offset);
        o.m2 = __shfl_xor_sync(0xffffffffu, w.m2, offset);
        w = welford_merge(w, o);
    }
    return w;
}

}  // namespace kiln
