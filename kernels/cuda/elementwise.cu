// kernels/cuda/elementwise.cu: activations, broadcast arithmetic, resampling, concatenation,
// timestep embeddings and casts. bf16/f16 storage, f32 arithmetic, rounded once on store.
// Launchers and the typed entry list: kernels/src/elementwise.rs.
//
// Every kernel is one thread per VEC consecutive output elements on a 1-d grid of EW_THREADS
// threads per block (EW_THREADS mirrors elementwise.rs). `vec` (8, or 4 for casts, or 1) is
// chosen by the launcher: VEC > 1 only where the VEC values of one thread are contiguous in
// every operand and all base pointers are 16-byte aligned; a thread past the last whole
// vector finishes the tail element by element.
#include "common.cuh"

#define EW_THREADS 256
#define BCAST_MAX_RANK 6

// A broadcast binary op's loop nest (built in elementwise.rs, mirrored there as #[repr(C)]):
// `rank` axes, outermost first; the output is contiguous over them and lhs/rhs advance by
// their stride per step (0 where broadcast). Size-1 axes are dropped and neighbours merged
// beforehand, so a same-shape op has rank 1, a [C] bias over [N, H, W, C] rank 2.
struct Bcast {
    long long size[BCAST_MAX_RANK];
    long long lhs[BCAST_MAX_RANK];
    long long rhs[BCAST_MAX_RANK];
    int rank;
    int pad;
};

// A permutation's copy plan (built in elementwise/permute.rs, mirrored there as #[repr(C)]):
// `rank` output axes, outermost first, with their sizes, the input's element stride along each
// (`in_stride`) and the output's (`out_stride`, contiguous: out_stride[rank-1] = 1). Size-1 axes
// are dropped and axes that stay adjacent in the input merged beforehand, so a permutation that
// moves nothing is rank 1 with in_stride 1. `tile_axis` is the output axis whose input stride
// is 1 when the tiled kernel is used (-1 for the gather kernel).
#define PERM_MAX_RANK 6
#define PERM_TILE 32  // tiled kernel: PERM_TILE x PERM_TILE elements per block,
#define PERM_ROWS 8   //               PERM_TILE x PERM_ROWS threads
struct Perm {
    long long size[PERM_MAX_RANK];
    long long in_stride[PERM_MAX_RANK];
    long long out_stride[PERM_MAX_RANK];
    int rank;
    int tile_axis;
};

namespace {

using namespace kiln;

__device__ __forceinline__ size_t global_thread() { return (size_t)blockIdx.x * blockDim.x + threadIdx.x; }

// y[i] = f(x[i]) for i < n.
template <typename S, typename D, int VEC, typename F>
__device__ __forceinline__ void map(const S* __restrict__ x, D* __restrict__ y, size_t n, F f) {
    size_t i = global_thread() * VEC;
    if (i + VEC <= n) {
        const Vec<S, VEC> v = load_vec<S, VEC>(x + i);
        Vec<D, VEC> out;
#pragma unroll
        for (int j = 0; j < VEC; ++j) out.v[j] = from_f32<D>(f(to_f32(v.v[j])));
        store_vec<D, VEC>(y + i, out);
    } else {
        for (; i < n; ++i) y[i] = from_f32<D>(f(to_f32(x[i])));
    }
}

struct Gelu {
    __device__ float operator()(float v) const { return gelu_f32(v); }
};
struct Silu {
    __device__ float operator()(float v) const { return silu_f32(v); }
};
struct Affine {
    float mul, add;
    __device__ float operator()(float v) const { return v * mul + add; }
};
struct Identity {
    __device__ float operator()(float v) const { return v; }
};
struct Add {
    __device__ float operator()(float a, float b) const { return a + b; }
};
struct Mul {
    __device__ float operator()(float a, float b) const { return a * b; }
};

// x [rows, 2h] -> y [rows, h]: y[r, j] = x[r, j] * gelu(x[r, h + j]). VEC divides h.
template <typename T, int VEC>
__device__ void geglu(const T* __restrict__ x, T* __restrict__ y, size_t rows, size_t h) {
    const size_t i = global_thread() * VEC;  // flat output index
    if (i >= rows * h) return;
    const size_t r = i / h, j = i % h;
    const Vec<T, VEC> hid = load_vec<T, VEC>(x + r * 2 * h + j);
    const Vec<T, VEC> gate = load_vec<T, VEC>(x + r * 2 * h + h + j);
    Vec<T, VEC> out;
#pragma unroll
    for (int k = 0; k < VEC; ++k) out.v[k] = from_f32<T>(to_f32(hid.v[k]) * gelu_f32(to_f32(gate.v[k])));
    store_vec<T, VEC>(y + i, out);
}

// out = a op b over the loop nest p; VEC divides the innermost size and the innermost strides
// are 0 or 1, so one thread's VEC outputs read VEC contiguous values or one repeated value.
template <typename T, int VEC, typename Op>
__device__ void broadcast(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, const Bcast& p,
                          size_t n, Op op) {
    const size_t o = global_thread() * VEC;
    if (o >= n) return;
    unsigned long long rem = o, ao = 0, bo = 0;
#pragma unroll
    for (int ax = BCAST_MAX_RANK - 1; ax >= 0; --ax) {
        if (ax < p.rank) {
            const unsigned long long s = p.size[ax], k = rem % s;
            rem /= s;
            ao += k * p.lhs[ax];
            bo += k * p.rhs[ax];
        }
    }
    const long long la = p.lhs[p.rank - 1], lb = p.rhs[p.rank - 1];
    float av[VEC], bv[VEC];
    if (la == 1) {
        const Vec<T, VEC> v = load_vec<T, VEC>(a + ao);
#pragma unroll
        for (int k = 0; k < VEC; ++k) av[k] = to_f32(v.v[k]);
    } else {
        const float s = to_f32(a[ao]);
#pragma unroll
        for (int k = 0; k < VEC; ++k) av[k] = s;
    }
    if (lb == 1) {
        const Vec<T, VEC> v = load_vec<T, VEC>(b + bo);
#pragma unroll
        for (int k = 0; k < VEC; ++k) bv[k] = to_f32(v.v[k]);
    } else {
        const float s = to_f32(b[bo]);
#pragma unroll
        for (int k = 0; k < VEC; ++k) bv[k] = s;
    }
    Vec<T, VEC> r;
#pragma unroll
    for (int k = 0; k < VEC; ++k) r.v[k] = from_f32<T>(op(av[k], bv[k]));
    store_vec<T, VEC>(out + o, r);
}

// x [N, H, W, C] -> y [N, 2H, 2W, C]; one thread per VEC channels of one input pixel, written to
// the four output pixels (2h + dy, 2w + dx). VEC divides C.
template <typename T, int VEC>
__device__ void upsample_nearest2x(const T* __restrict__ x, T* __restrict__ y, size_t N, size_t H, size_t W,
                                   size_t C) {
    const size_t i = global_thread() * VEC;
    if (i >= N * H * W * C) return;
    const size_t c = i % C, pix = i / C;
    const size_t w = pix % W, h = (pix / W) % H, n = pix / (W * H);
    const Vec<T, VEC> v = load_vec<T, VEC>(x + i);
    const size_t row = 2 * W * C;                                    // one output row
    T* dst = y + ((n * 2 * H + 2 * h) * 2 * W + 2 * w) * C + c;  // output pixel (2h, 2w)
    store_vec<T, VEC>(dst, v);
    store_vec<T, VEC>(dst + C, v);
    store_vec<T, VEC>(dst + row, v);
    store_vec<T, VEC>(dst + row + C, v);
}

// a [outer, ab], b [outer, bb] -> out [outer, ab + bb]: concatenation along any dimension,
// with ab and bb the per-outer-index block of each operand. VEC divides ab and bb.
template <typename T, int VEC>
__device__ void concat(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, size_t outer,
                       size_t ab, size_t bb) {
    const size_t o = global_thread() * VEC, tot = ab + bb;
    if (o >= outer * tot) return;
    const size_t r = o / tot, j = o % tot;
    const T* src = j < ab ? a + r * ab + j : b + r * bb + (j - ab);
    store_vec<T, VEC>(out + o, load_vec<T, VEC>(src));
}

// t [n] (f32) -> out [n, dim], diffusers' get_timestep_embedding: with half = dim / 2 and
// freq_k = exp(-log_period * k / denom) (denom = half - downscale_freq_shift), columns
// [0, half) hold sin(t freq_k) and [half, 2 half) cos(t freq_k), swapped when flip != 0; an
// odd dim gets a zero last column. The product t * freq is f32 as in diffusers; sin and cos
// are evaluated in f64 and rounded, like the CPU reference.
template <typename T>
__device__ void timestep_embedding(const float* __restrict__ t, T* __restrict__ out, size_t n, size_t dim,
                                   float log_period, float denom, int flip) {
    const size_t o = global_thread();
    if (o >= n * dim) return;
    const size_t r = o / dim, j = o % dim, half = dim / 2;
    float v = 0.0f;
    if (j < 2 * half) {
        const bool first = j < half;
        const float k = (float)(first ? j : j - half);
        const float freq = expf(-log_period * k / denom);
        const double arg = (double)(t[r] * freq);
        const bool is_sin = flip ? !first : first;
        v = (float)(is_sin ? sin(arg) : cos(arg));
    }
    out[o] = from_f32<T>(v);
}

// Permutation, gather form: one thread per VEC consecutive outputs, reading each from its input
// offset (the output index decomposed over the plan's axes, innermost last, times the input
// strides). Writes are coalesced; reads are too when the innermost output axis is contiguous in
// the input (in_stride[rank-1] == 1), the only case the launcher picks VEC > 1 for (VEC then
// divides size[rank-1], so one thread's VEC inputs are contiguous). T is a same-size integer
// (the copy is bitwise, for any dtype).
template <typename T, int VEC>
__device__ void permute_gather(const T* __restrict__ x, T* __restrict__ y, const Perm& p, size_t n) {
    const size_t o = global_thread() * VEC;
    if (o >= n) return;
    unsigned long long rem = o, src = 0;
#pragma unroll
    for (int ax = PERM_MAX_RANK - 1; ax >= 0; --ax) {
        if (ax < p.rank) {
            const unsigned long long s = p.size[ax], k = rem % s;
            rem /= s;
            src += k * p.in_stride[ax];
        }
    }
    if (VEC > 1) {
        store_vec<T, VEC>(y + o, load_vec<T, VEC>(x + src));
    } else {
        y[o] = x[src];
    }
}

// Permutation, tiled form (a transpose through shared memory), for when the innermost output
// axis A = rank-1 strides through the input (in_stride[A] != 1): the input's contiguous axis is
// output axis P = tile_axis. Each block moves one PERM_TILE x PERM_TILE tile of (P, A) for one
// index of the other ("batch") axes: it reads the tile with consecutive threads on consecutive
// P (contiguous in the input), and writes it with consecutive threads on consecutive A
// (contiguous in the output). blockIdx.x = (batch * tiles_p + tp) * tiles_a + ta; threads
// (PERM_TILE, PERM_ROWS), each moving PERM_TILE / PERM_ROWS elements per phase.
template <typename T>
__device__ void permute_tiled(const T* __restrict__ x, T* __restrict__ y, const Perm& p) {
    __shared__ T tile[PERM_TILE][PERM_TILE + 1];  // [a][p]; +1 staggers the banks
    const int P = p.tile_axis, A = p.rank - 1;
    const long long n_p = p.size[P], n_a = p.size[A];
    const long long tiles_a = (n_a + PERM_TILE - 1) / PERM_TILE, tiles_p = (n_p + PERM_TILE - 1) / PERM_TILE;
    unsigned long long rest = blockIdx.x;
    const long long ta = rest % tiles_a;
    rest /= tiles_a;
    const long long tp = rest % tiles_p;
    rest /= tiles_p;
    // rest: the batch index over the output axes other than P and A, innermost last.
    long long in_base = 0, out_base = 0;
#pragma unroll
    for (int ax = PERM_MAX_RANK - 1; ax >= 0; --ax) {
        if (ax < A && ax != P) {
            const unsigned long long s = p.size[ax], k = rest % s;
            rest /= s;
            in_base += k * p.in_stride[ax];
            out_base += k * p.out_stride[ax];
        }
    }
    const int tx = threadIdx.x, ty = threadIdx.y;
    const long long ip = tp * PERM_TILE + tx;  // read phase: P index (input stride 1)
#pragma unroll
    for (int i = 0; i < PERM_TILE; i += PERM_ROWS) {
        const long long ia = ta * PERM_TILE + ty + i;
        if (ip < n_p && ia < n_a) tile[ty + i][tx] = x[in_base + ip + ia * p.in_stride[A]];
    }
    __syncthreads();
    const long long oa = ta * PERM_TILE + tx;  // write phase: A index (output stride 1)
#pragma unroll
    for (int i = 0; i < PERM_TILE; i += PERM_ROWS) {
        const long long op = tp * PERM_TILE + ty + i;
        if (op < n_p && oa < n_a) y[out_base + op * p.out_stride[P] + oa] = tile[tx][ty + i];
    }
}

}  // namespace

// ---- entry points: <op>_<dtype>, cast_<from>_to_<to> -----------------------------------------

#define KILN_VEC_DISPATCH(VEC_EXPR, CALL8, CALL1) \
    if ((VEC_EXPR) == 8) {                       \
        CALL8;                                   \
    } else {                                     \
        CALL1;                                   \
    }

#define KILN_EW_ENTRIES(T, SUFFIX)                                                                             \
    extern "C" __global__ void __launch_bounds__(EW_THREADS)                                                  \
        gelu_##SUFFIX(const T* x, T* y, size_t n, int vec) {                                                   \
        KILN_VEC_DISPATCH(vec, (map<T, T, 8>(x, y, n, Gelu{})), (map<T, T, 1>(x, y, n, Gelu{})))               \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(EW_THREADS)                                                  \
        silu_##SUFFIX(const T* x, T* y, size_t n, int vec) {                                                   \
        KILN_VEC_DISPATCH(vec, (map<T, T, 8>(x, y, n, Silu{})), (map<T, T, 1>(x, y, n, Silu{})))               \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(EW_THREADS)                                                  \
        affine_##SUFFIX(const T* x, T* y, size_t n, float mul, float add, int vec) {                           \
        KILN_VEC_DISPATCH(vec, (map<T, T, 8>(x, y, n, Affine{mul, add})),                                      \
                          (map<T, T, 1>(x, y, n, Affine{mul, add})))                                           \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(EW_THREADS)                                                  \
        geglu_##SUFFIX(const T* x, T* y, size_t rows, size_t h, int vec) {                                     \
        KILN_VEC_DISPATCH(vec, (geglu<T, 8>(x, y, rows, h)), (geglu<T, 1>(x, y, rows, h)))                     \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(EW_THREADS)                                                  \
        add_##SUFFIX(const T* a, const T* b, T* out, Bcast p, size_t n, int vec) {                             \
        KILN_VEC_DISPATCH(vec, (broadcast<T, 8>(a, b, out, p, n, Add{})),                                      \
                          (broadcast<T, 1>(a, b, out, p, n, Add{})))                                           \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(EW_THREADS)                                                  \
        mul_##SUFFIX(const T* a, const T* b, T* out, Bcast p, size_t n, int vec) {                             \
        KILN_VEC_DISPATCH(vec, (broadcast<T, 8>(a, b, out, p, n, Mul{})),                                      \
                          (broadcast<T, 1>(a, b, out, p, n, Mul{})))                                           \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(EW_THREADS) upsample_nearest2x_##SUFFIX(                     \
        const T* x, T* y, size_t N, size_t H, size_t W, size_t C, int vec) {                                   \
        KILN_VEC_DISPATCH(vec, (upsample_nearest2x<T, 8>(x, y, N, H, W, C)),                                   \
                          (upsample_nearest2x<T, 1>(x, y, N, H, W, C)))                                        \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(EW_THREADS)                                                  \
        concat_##SUFFIX(const T* a, const T* b, T* out, size_t outer, size_t ab, size_t bb, int vec) {         \
        KILN_VEC_DISPATCH(vec, (concat<T, 8>(a, b, out, outer, ab, bb)),                                       \
                          (concat<T, 1>(a, b, out, outer, ab, bb)))                                            \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(EW_THREADS) timestep_embedding_##SUFFIX(                     \
        const float* t, T* out, size_t n, size_t dim, float log_period, float denom, int flip) {               \
        timestep_embedding<T>(t, out, n, dim, log_period, denom, flip);                                        \
    }

KILN_EW_ENTRIES(__nv_bfloat16, bf16)
KILN_EW_ENTRIES(__half, f16)

// Casts: 4 values per thread (16 bytes of f32) where aligned, rounding to nearest even.
#define KILN_CAST_ENTRY(S, D, NAME)                                                                   \
    extern "C" __global__ void __launch_bounds__(EW_THREADS) NAME(const S* x, D* y, size_t n, int vec) { \
        if (vec == 4)                                                                                 \
            map<S, D, 4>(x, y, n, Identity{});                                                        \
        else                                                                                          \
            map<S, D, 1>(x, y, n, Identity{});                                                        \
    }

KILN_CAST_ENTRY(float, __nv_bfloat16, cast_f32_to_bf16)
KILN_CAST_ENTRY(float, __half, cast_f32_to_f16)
KILN_CAST_ENTRY(__nv_bfloat16, float, cast_bf16_to_f32)
KILN_CAST_ENTRY(__half, float, cast_f16_to_f32)
KILN_CAST_ENTRY(__nv_bfloat16, __half, cast_bf16_to_f16)
KILN_CAST_ENTRY(__half, __nv_bfloat16, cast_f16_to_bf16)

// Permutations, by element width (bitwise copies): permute_b16 / permute_b32 (gather; vec is
// 16 bytes' worth of elements or 1) and permute_tiled_b16 / permute_tiled_b32 (PERM_TILE x
// PERM_ROWS threads per block).
#define KILN_PERMUTE_ENTRIES(T, BITS)                                                                  \
    extern "C" __global__ void __launch_bounds__(EW_THREADS)                                          \
        permute_b##BITS(const T* x, T* y, Perm p, size_t n, int vec) {                                \
        if (vec == 16 / (int)sizeof(T))                                                               \
            permute_gather<T, 16 / sizeof(T)>(x, y, p, n);                                            \
        else                                                                                          \
            permute_gather<T, 1>(x, y, p, n);                                                         \
    }                                                                                                 \
    extern "C" __global__ void __launch_bounds__(PERM_TILE * PERM_ROWS)                               \
        permute_tiled_b##BITS(const T* x, T* y, Perm p) {                                             \
        permute_tiled<T>(x, y, p);                                                                    \
    }

KILN_PERMUTE_ENTRIES(unsigned short, 16)
KILN_PERMUTE_ENTRIES(unsigned int, 32)
