// kernels/cuda/norm.cu: group norm (optionally fused with SiLU), layer norm and the row softmax,
// bf16 and f16 storage, f32 arithmetic. Launchers and the typed entry list: kernels/src/norm.rs.
//
// Group norm over channels-last x [N, L, C] (L = H*W), G groups of cg = C/G channels, as
// torch.nn.GroupNorm: biased variance per (sample, group) over L*cg values, then per-channel
// gamma/beta, then SiLU if asked. Three launches on one stream:
//   1. group_norm_stats:    grid (chunks, N), block (cols, lanes). Block (k, n) reads rows
//      [k*rpc, min(L, (k+1)*rpc)) of sample n. Thread (col, lane) owns channels
//      [col*VEC, col*VEC+VEC) and rows r0+lane, r0+lane+lanes, ..., keeping one Welford state
//      per channel (Welford: stable in f32 whatever the mean). The block then merges its states
//      per group (Chan et al.) and writes partial[n][k][g] = (mean, M2) of its rows * cg values.
//   2. group_norm_finalize: one warp per (n, g) merges the chunks' partials and writes, per
//      channel c of the group, mean[n][c] and scale[n][c] = gamma[c] / sqrt(var + eps).
//   3. group_norm_apply:    grid (ceil(L*C/VEC/256), N), 256 threads; each thread VEC
//      consecutive channels of one position: y = (x - mean) * scale + beta, then SiLU.
// The workspace (f32, from the caller) holds partial [N, chunks, G, 2] (padded to 8 floats),
// mean [N, C] and scale [N, C]. VEC is 8 (16-byte accesses, C % 8 == 0 and aligned pointers) or 1, passed as
// `vec`; the launcher picks it and the block shape. STATS_THREADS mirrors STATS_MAX_THREADS
// in norm.rs.
//
// Layer norm over the last dimension of x [rows, C], as torch.nn.LayerNorm: one warp per row,
// two passes (mean, then mean squared deviation) like the CPU reference; the second and third
// reads of a row hit L1. LN_WARPS mirrors norm.rs.
//
// Softmax over the last dimension of x [rows, C], as torch.softmax(x, -1): one warp per row
// (LN_WARPS rows per block), f32 arithmetic. Pass 1 keeps, per lane, the running maximum m and
// the sum s of exp(x - m) over the lane's elements, rescaling s when m grows (the "online
// softmax" of Milakov & Gimelshein, 2018), and merges the 32 lanes' (m, s) with shuffles; pass 2
// writes exp(x - m) / s. Two reads of the row instead of three. softmax_<dtype> reads and
// writes the storage type; x and y may then be the same buffer (each element is read by the
// thread that then writes it, after the row's pass 1). softmax_f32_<dtype> reads f32 rows and
// writes the storage type (inputs and outputs in different buffers): the attention fallback's
// scores, which it keeps in f32 because a score rounded to bf16/f16 is off by up to half an ulp
// and the softmax passes that on as a relative error of the probability however small the
// scores' spread. Given y_lo, it also writes the probabilities' rounding remainders there
// (p - y rounded to the storage type: p = y + y_lo to about u^2), so that the attention's P V
// GEMM on the tensor cores sees the probabilities at near-f32 precision (two GEMMs, y and y_lo). With causal_period > 0 (the attention fallback's causal mask on a stack
// of [causal_period, C] score matrices) row r keeps only its first (r % causal_period) +
// causal_offset + 1 columns (at least 1): the others count as -inf and are written as 0.
#include "common.cuh"

#define STATS_THREADS 1024  // launch bound; blocks are (C / VEC) x lanes, about 256
#define LN_WARPS 8

namespace {

using namespace kiln;

template <typename T, int VEC>
__device__ __forceinline__ void welford_rows(const T* base, int r, int r1, int stride_rows, int C, float& cnt,
                                             float (&mean)[VEC], float (&m2)[VEC]) {
    // Four rows per step so each thread has four independent 16-byte loads in flight.
    for (; r + 3 * stride_rows < r1; r += 4 * stride_rows) {
        Vec<T, VEC> v[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) v[u] = load_vec<T, VEC>(base + (size_t)(r + u * stride_rows) * C);
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            cnt += 1.0f;
            const float inv = 1.0f / cnt;
#pragma unroll
            for (int i = 0; i < VEC; ++i) {
                const float xv = to_f32(v[u].v[i]);
                const float d = xv - mean[i];
                mean[i] += d * inv;
                m2[i] += d * (xv - mean[i]);
            }
        }
    }
    for (; r < r1; r += stride_rows) {
        const Vec<T, VEC> v = load_vec<T, VEC>(base + (size_t)r * C);
        cnt += 1.0f;
        const float inv = 1.0f / cnt;
#pragma unroll
        for (int i = 0; i < VEC; ++i) {
            const float xv = to_f32(v.v[i]);
            const float d = xv - mean[i];
            mean[i] += d * inv;
            m2[i] += d * (xv - mean[i]);
        }
    }
}

// Dynamic shared memory: s_mean [lanes][C], s_m2 [lanes][C], s_cnt [lanes] (f32).
template <typename T, int VEC>
__device__ void group_norm_stats(const T* __restrict__ x, float2* __restrict__ partial, int L, int C, int G,
                                 int rpc) {
    extern __shared__ float smem[];
    const int n = blockIdx.y, chunk = blockIdx.x, chunks = gridDim.x;
    const int col = threadIdx.x, lane = threadIdx.y, lanes = blockDim.y;
    const int r0 = chunk * rpc, r1 = min(L, r0 + rpc);

    float cnt = 0.0f, mean[VEC], m2[VEC];
#pragma unroll
    for (int i = 0; i < VEC; ++i) mean[i] = m2[i] = 0.0f;
    const T* base = x + (size_t)n * L * C + col * VEC;  // channel col*VEC of row 0 of sample n
    welford_rows<T, VEC>(base, r0 + lane, r1, lanes, C, cnt, mean, m2);

    float* s_mean = smem;
    float* s_m2 = smem + lanes * C;
    float* s_cnt = smem + 2 * lanes * C;
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
        s_mean[lane * C + col * VEC + i] = mean[i];
        s_m2[lane * C + col * VEC + i] = m2[i];
    }
    if (col == 0) s_cnt[lane] = cnt;
    __syncthreads();

    // One thread per group merges lanes x channels of the group.
    const int cg = C / G;
    const int tid = lane * blockDim.x + col, nthreads = lanes * blockDim.x;
    for (int g = tid; g < G; g += nthreads) {
        Welford acc = {0.0f, 0.0f, 0.0f};
        for (int l = 0; l < lanes; ++l) {
            for (int c = g * cg; c < (g + 1) * cg; ++c) {
                const Welford w = {s_cnt[l], s_mean[l * C + c], s_m2[l * C + c]};
                acc = welford_merge(acc, w);
            }
        }
        partial[((size_t)n * chunks + chunk) * G + g] = make_float2(acc.mean, acc.m2);
    }
}

// Grid: ceil(N*G / 8) blocks of 256 threads; warp w of the grid handles (n, g) = (w / G, w % G).
template <typename T>
__device__ void group_norm_finalize(const float2* __restrict__ partial, const T* __restrict__ gamma,
                                    float* __restrict__ mean_out, float* __restrict__ scale_out, int N, int L,
                                    int C, int G, int rpc, int chunks, float eps) {
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
    if (warp >= N * G) return;  // whole warps leave together
    const int n = warp / G, g = warp % G, cg = C / G;
    Welford acc = {0.0f, 0.0f, 0.0f};
    for (int k = lane; k < chunks; k += 32) {
        const float2 p = partial[((size_t)n * chunks + k) * G + g];
        const int rows = min(L, (k + 1) * rpc) - k * rpc;
        const Welford w = {(float)rows * (float)cg, p.x, p.y};
        acc = welford_merge(acc, w);
    }
    acc = warp_welford(acc);
    // Lanes may differ in the last bits (merge order); everyone takes lane 0's.
    const float mean = __shfl_sync(0xffffffffu, acc.mean, 0);
    const float m2 = __shfl_sync(0xffffffffu, acc.m2, 0);
    const float var = m2 / ((float)L * (float)cg);  // biased, as nn.GroupNorm
    const float rstd = 1.0f / sqrtf(var + eps);
    for (int c = g * cg + lane; c < (g + 1) * cg; c += 32) {
        mean_out[n * C + c] = mean;
        scale_out[n * C + c] = rstd * to_f32(gamma[c]);
    }
}

template <typename T, int VEC>
__device__ void group_norm_apply(const T* __restrict__ x, const float* __restrict__ mean,
                                 const float* __restrict__ scale, const T* __restrict__ beta, T* __restrict__ y,
                                 int L, int C, int silu) {
    const int n = blockIdx.y;
    const int i = (blockIdx.x * blockDim.x + threadIdx.x) * VEC;  // offset within sample n
    if (i >= L * C) return;
    const int c = i % C;  // VEC divides C: the VEC values are channels c.. of one position
    const size_t off = (size_t)n * L * C + i;
    const Vec<T, VEC> v = load_vec<T, VEC>(x + off);
    const Vec<T, VEC> b = load_vec<T, VEC>(beta + c);
    // mean and scale of channels c..c+VEC-1 (VEC f32s, 32-byte aligned when VEC == 8: the
    // workspace is 16-byte aligned and n*C + c is a multiple of 8).
    float m[VEC], k[VEC];
    if (VEC % 4 == 0) {
#pragma unroll
        for (int j = 0; j < VEC; j += 4) {
            const Vec<float, 4> mv = load_vec<float, 4>(mean + n * C + c + j);
            const Vec<float, 4> kv = load_vec<float, 4>(scale + n * C + c + j);
#pragma unroll
            for (int u = 0; u < 4; ++u) m[j + u] = mv.v[u], k[j + u] = kv.v[u];
        }
    } else {
#pragma unroll
        for (int j = 0; j < VEC; ++j) m[j] = mean[n * C + c + j], k[j] = scale[n * C + c + j];
    }
    Vec<T, VEC> out;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
        float r = (to_f32(v.v[j]) - m[j]) * k[j] + to_f32(b.v[j]);
        if (silu) r = silu_f32(r);
        out.v[j] = from_f32<T>(r);
    }
    store_vec<T, VEC>(y + off, out);
}

// Grid: ceil(rows / LN_WARPS) blocks of LN_WARPS * 32 threads; one warp per row.
template <typename T, int VEC>
__device__ void layer_norm(const T* __restrict__ x, const T* __restrict__ gamma, const T* __restrict__ beta,
                           T* __restrict__ y, int rows, int C, float eps) {
    const int row = blockIdx.x * LN_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    const T* xr = x + (size_t)row * C;
    T* yr = y + (size_t)row * C;

    float s = 0.0f;
    for (int c = lane * VEC; c < C; c += 32 * VEC) {
        const Vec<T, VEC> v = load_vec<T, VEC>(xr + c);
#pragma unroll
        for (int j = 0; j < VEC; ++j) s += to_f32(v.v[j]);
    }
    const float mean = warp_sum(s) / (float)C;

    float q = 0.0f;
    for (int c = lane * VEC; c < C; c += 32 * VEC) {
        const Vec<T, VEC> v = load_vec<T, VEC>(xr + c);
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            const float d = to_f32(v.v[j]) - mean;
            q += d * d;
        }
    }
    const float rstd = 1.0f / sqrtf(warp_sum(q) / (float)C + eps);

    for (int c = lane * VEC; c < C; c += 32 * VEC) {
        const Vec<T, VEC> v = load_vec<T, VEC>(xr + c);
        const Vec<T, VEC> g = load_vec<T, VEC>(gamma + c);
        const Vec<T, VEC> b = load_vec<T, VEC>(beta + c);
        Vec<T, VEC> out;
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            out.v[j] = from_f32<T>((to_f32(v.v[j]) - mean) * rstd * to_f32(g.v[j]) + to_f32(b.v[j]));
        }
        store_vec<T, VEC>(yr + c, out);
    }
}

// s * exp(m - m_new), with a sum of nothing (m == m_new == -inf) kept at 0 rather than NaN.
__device__ __forceinline__ float rescale(float s, float m, float m_new) {
    return m == m_new ? s : s * expf(m - m_new);
}

// VEC elements of T at p as f32, in 16-byte loads (one for 8 halves, two for 8 floats) or one
// scalar load for VEC == 1: p is aligned to min(16, sizeof(T) * VEC) bytes.
template <typename T, int VEC> __device__ __forceinline__ void load_f32(const T* p, float (&out)[VEC]) {
    constexpr int W = (int)(16 / sizeof(T)) < VEC ? (int)(16 / sizeof(T)) : VEC;  // elements per load
#pragma unroll
    for (int i = 0; i < VEC; i += W) {
        const Vec<T, W> v = load_vec<T, W>(p + i);
#pragma unroll
        for (int j = 0; j < W; ++j) out[i + j] = to_f32(v.v[j]);
    }
}

// Grid: ceil(rows / LN_WARPS) blocks of LN_WARPS * 32 threads; one warp per row. TIn is the
// scores' type (the storage type, or f32 for the attention fallback's f32 scores), TOut the
// probabilities'. With y_lo != nullptr, y_lo gets what rounding to TOut left out of y,
// rounded too (p = y + y_lo to about u^2 relative). No __restrict__: x == y is allowed when
// TIn == TOut.
template <typename TIn, typename TOut, int VEC>
__device__ void softmax_rows(const TIn* x, TOut* y, TOut* y_lo, int rows, int C, int causal_period,
                             int causal_offset) {
    const int row = blockIdx.x * LN_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    const TIn* xr = x + (size_t)row * C;
    TOut* yr = y + (size_t)row * C;
    TOut* yr_lo = y_lo == nullptr ? nullptr : y_lo + (size_t)row * C;
    const float neg_inf = -__int_as_float(0x7f800000);
    // Columns >= valid are masked (causal only).
    const int valid = causal_period > 0 ? min(C, row % causal_period + causal_offset + 1) : C;

    float m = neg_inf, s = 0.0f;
    for (int c = lane * VEC; c < C; c += 32 * VEC) {
        float xv[VEC], vm = neg_inf;
        load_f32<TIn, VEC>(xr + c, xv);
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            if (c + j >= valid) xv[j] = neg_inf;
            vm = fmaxf(vm, xv[j]);
        }
        const float m_new = fmaxf(m, vm);
        s = rescale(s, m, m_new);
#pragma unroll
        for (int j = 0; j < VEC; ++j) s += xv[j] == neg_inf ? 0.0f : expf(xv[j] - m_new);
        m = m_new;
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        const float mo = __shfl_xor_sync(0xffffffffu, m, offset);
        const float so = __shfl_xor_sync(0xffffffffu, s, offset);
        const float m_new = fmaxf(m, mo);
        s = rescale(s, m, m_new) + rescale(so, mo, m_new);
        m = m_new;
    }
    // Lanes may differ in the last bits (merge order); everyone takes lane 0's.
    m = __shfl_sync(0xffffffffu, m, 0);
    const float inv = 1.0f / __shfl_sync(0xffffffffu, s, 0);

    for (int c = lane * VEC; c < C; c += 32 * VEC) {
        float xv[VEC];
        load_f32<TIn, VEC>(xr + c, xv);
        Vec<TOut, VEC> out, lo;
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            const float p = (c + j < valid ? expf(xv[j] - m) : 0.0f) * inv;
            out.v[j] = from_f32<TOut>(p);
            lo.v[j] = from_f32<TOut>(p - to_f32(out.v[j]));  // exact (Sterbenz) unless p underflows TOut
        }
        store_vec<TOut, VEC>(yr + c, out);
        if (yr_lo != nullptr) store_vec<TOut, VEC>(yr_lo + c, lo);
    }
}

}  // namespace

// ---- entry points: <op>_<dtype> ---------------------------------------------------------------

#define KILN_NORM_ENTRIES(T, SUFFIX)                                                                          \
    extern "C" __global__ void __launch_bounds__(STATS_THREADS)                                               \
        group_norm_stats_##SUFFIX(const T* x, float2* partial, int L, int C, int G, int rpc, int vec) {       \
        if (vec == 8)                                                                                          \
            group_norm_stats<T, 8>(x, partial, L, C, G, rpc);                                                  \
        else                                                                                                   \
            group_norm_stats<T, 1>(x, partial, L, C, G, rpc);                                                  \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(256)                                                         \
        group_norm_finalize_##SUFFIX(const float2* partial, const T* gamma, float* mean, float* scale, int N,  \
                                     int L, int C, int G, int rpc, int chunks, float eps) {                    \
        group_norm_finalize<T>(partial, gamma, mean, scale, N, L, C, G, rpc, chunks, eps);                     \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(256)                                                         \
        group_norm_apply_##SUFFIX(const T* x, const float* mean, const float* scale, const T* beta, T* y,     \
                                  int L, int C, int silu, int vec) {                                           \
        if (vec == 8)                                                                                          \
            group_norm_apply<T, 8>(x, mean, scale, beta, y, L, C, silu);                                       \
        else                                                                                                   \
            group_norm_apply<T, 1>(x, mean, scale, beta, y, L, C, silu);                                       \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(LN_WARPS * 32)                                               \
        layer_norm_##SUFFIX(const T* x, const T* gamma, const T* beta, T* y, int rows, int C, float eps,       \
                            int vec) {                                                                         \
        if (vec == 8)                                                                                          \
            layer_norm<T, 8>(x, gamma, beta, y, rows, C, eps);                                                 \
        else                                                                                                   \
            layer_norm<T, 1>(x, gamma, beta, y, rows, C, eps);                                                 \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(LN_WARPS * 32)                                               \
        softmax_##SUFFIX(const T* x, T* y, int rows, int C, int causal_period, int causal_offset, int vec) {    \
        if (vec == 8)                                                                                          \
            softmax_rows<T, T, 8>(x, y, nullptr, rows, C, causal_period, causal_offset);                       \
        else                                                                                                   \
            softmax_rows<T, T, 1>(x, y, nullptr, rows, C, causal_period, causal_offset);                       \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(LN_WARPS * 32) softmax_f32_##SUFFIX(                         \
        const float* x, T* y, T* y_lo, int rows, int C, int causal_period, int causal_offset, int vec) {       \
        if (vec == 8)                                                                                          \
            softmax_rows<float, T, 8>(x, y, y_lo, rows, C, causal_period, causal_offset);                      \
        else                                                                                                   \
            softmax_rows<float, T, 1>(x, y, y_lo, rows, C, causal_period, causal_offset);                      \
    }

KILN_NORM_ENTRIES(__nv_bfloat16, bf16)
KILN_NORM_ENTRIES(__half, f16)
