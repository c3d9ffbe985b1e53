/*
 * The native build of our kernels: ../ddpm_kernels.c as it is (through wasm_simd128.h here, the
 * same four-lane operations natively), and, for the kernels that carry most of a step's work, the
 * machine's vector width (16 floats with AVX-512, 8 with AVX2, 4 otherwise) and the pool's
 * threads. Each output is still summed in the order the wasm kernels sum it, one multiply-add
 * at a time (fused exactly where DDPM_FMA is), so every kernel gives the wasm module's bits, for
 * any number of threads.
 */
#include "../ddpm_kernels.c"

#include <stdlib.h>

#include "pool.h"

#if defined(__AVX512F__)
#define VL 16
#elif defined(__AVX2__)
#define VL 8
#else
#define VL 4
#endif

typedef float vf __attribute__((vector_size(VL * 4)));

static inline vf vload(const float* p) {
  vf v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void vstore(float* p, vf v) { memcpy(p, &v, sizeof v); }
/* A broadcast (not 0 + f, which costs an add and turns −0 into +0). */
static inline vf vsplat(float f) {
  vf v;
  for (int l = 0; l < VL; l++) v[l] = f;
  return v;
}
#ifdef DDPM_FMA
static inline vf vmadd(vf a, vf b, vf c) {
  vf r;
  for (int l = 0; l < VL; l++) r[l] = fmaf(a[l], b[l], c[l]);
  return r;
}
#else
static inline vf vmadd(vf a, vf b, vf c) { return c + a * b; }
#endif

/*
 * R rows of a product (R ≤ 8, a constant where it is inlined): o[r][j] (+)= Σ_p a[r·a_row +
 * p·a_step]·b[p·ldb + j] for r < R and j < n (a multiple of 4), p ascending, in R × 2 vectors of
 * registers (then one vector of four lanes at a time); `acc` adds to o instead of overwriting it.
 * The strides make it both products: a's rows (a_row = lda, a_step = 1) and a's columns (a_row =
 * 1, a_step = lda, the transposed one).
 */
static inline __attribute__((always_inline)) void gemm_rows(const int R, const float* a, long a_row, long a_step,
                                                            const float* b, long ldb, int kk, int n, float* o,
                                                            long ldo, int acc) {
  int j = 0;
  for (; j + 2 * VL <= n; j += 2 * VL) {
    vf c[8][2];
    for (int r = 0; r < R; r++)
      for (int h = 0; h < 2; h++) c[r][h] = acc ? vload(o + r * ldo + j + h * VL) : vsplat(0.0f);
    for (int p = 0; p < kk; p++) {
      const float* ap = a + p * a_step;
      const vf b0 = vload(b + p * ldb + j), b1 = vload(b + p * ldb + j + VL);
      for (int r = 0; r < R; r++) {
        const vf ar = vsplat(ap[r * a_row]);
        c[r][0] = vmadd(ar, b0, c[r][0]);
        c[r][1] = vmadd(ar, b1, c[r][1]);
      }
    }
    for (int r = 0; r < R; r++)
      for (int h = 0; h < 2; h++) vstore(o + r * ldo + j + h * VL, c[r][h]);
  }
  for (; j < n; j += 4) {
    v128_t c[8];
    for (int r = 0; r < R; r++) c[r] = acc ? wasm_v128_load(o + r * ldo + j) : wasm_f32x4_splat(0.0f);
    for (int p = 0; p < kk; p++) {
      const float* ap = a + p * a_step;
      const v128_t b0 = wasm_v128_load(b + p * ldb + j);
      for (int r = 0; r < R; r++) c[r] = MADD(wasm_f32x4_splat(ap[r * a_row]), b0, c[r]);
    }
    for (int r = 0; r < R; r++) wasm_v128_store(o + r * ldo + j, c[r]);
  }
}

/*
 * Rows per block of the products: 8 × 2 vectors of accumulators with AVX-512's 32 registers, 6 × 2
 * with AVX2's 16 (12 accumulators, 2 rows of b, a broadcast), 4 × 2 with four lanes.
 */
#define GEMM_ROWS (VL == 16 ? 8 : VL == 8 ? 6 : 4)

/*
 * out[i][j] (+)= Σ_p a[i·lda + p]·b[p·ldb + j] for rows × n outputs (n a multiple of 4), p
 * ascending; `acc` adds to out instead of overwriting it.
 */
static void gemm_wide(const float* a, long lda, const float* b, long ldb, int rows, int kk, int n, float* out,
                      long ldo, int acc) {
  int i = 0;
  for (; i + GEMM_ROWS <= rows; i += GEMM_ROWS)
    gemm_rows(GEMM_ROWS, a + (long)i * lda, lda, 1, b, ldb, kk, n, out + (long)i * ldo, ldo, acc);
  for (; i + 4 <= rows; i += 4) gemm_rows(4, a + (long)i * lda, lda, 1, b, ldb, kk, n, out + (long)i * ldo, ldo, acc);
  for (; i + 2 <= rows; i += 2) gemm_rows(2, a + (long)i * lda, lda, 1, b, ldb, kk, n, out + (long)i * ldo, ldo, acc);
  for (; i < rows; i++) {
    const float* ar = a + (long)i * lda;
    float* o = out + (long)i * ldo;
    int j = 0;
    for (; j + VL <= n; j += VL) {
      vf c = acc ? vload(o + j) : vsplat(0.0f);
      for (int p = 0; p < kk; p++) c = vmadd(vsplat(ar[p]), vload(b + p * ldb + j), c);
      vstore(o + j, c);
    }
    for (; j < n; j += 4) {
      v128_t c = acc ? wasm_v128_load(o + j) : wasm_f32x4_splat(0.0f);
      for (int p = 0; p < kk; p++) c = MADD(wasm_f32x4_splat(ar[p]), wasm_v128_load(b + p * ldb + j), c);
      wasm_v128_store(o + j, c);
    }
  }
}

/*
 * out[i][j] += Σ_t a[t·lda + i]·b[t·ldb + j] for i in [i0, i1) (a multiple of 4 apart) and j < n (a
 * multiple of 4), t ascending: gemm_tn_acc's sums, GEMM_ROWS rows of the output at a time (then 4, then 2).
 */
static void gemm_tn_wide(const float* a, long lda, const float* b, long ldb, int rows, int i0, int i1, int n,
                         float* out, long ldo) {
  int i = i0;
  for (; i + GEMM_ROWS <= i1; i += GEMM_ROWS)
    gemm_rows(GEMM_ROWS, a + i, 1, lda, b, ldb, rows, n, out + (long)i * ldo, ldo, 1);
  for (; i + 4 <= i1; i += 4) gemm_rows(4, a + i, 1, lda, b, ldb, rows, n, out + (long)i * ldo, ldo, 1);
  for (; i < i1; i += 2) gemm_rows(2, a + i, 1, lda, b, ldb, rows, n, out + (long)i * ldo, ldo, 1);
}

/* ---- the per-channel kernels at the full width ------------------------------------------- */
/*
 * Where the channels are a multiple of VL, the transforms of the Winograd kernels and GroupNorm
 * run VL channels at a time: the same operations on each channel as ../ddpm_kernels.c's four-lane
 * versions, which they fall back to otherwise, so the same bits.
 */

typedef int32_t vi __attribute__((vector_size(VL * 4)));

static inline vf vselect(vi mask, vf a, vf b) { return (vf)((mask & (vi)a) | (~mask & (vi)b)); }
static inline vf vmin(vf a, vf b) { return vselect((vi)(a < b), a, b); }
static inline vf vmax(vf a, vf b) { return vselect((vi)(a > b), a, b); }
/* Round to nearest, ties to even, for |v| < 2^22 (v_exp's are within ±126): f32x4.nearest's value. */
static inline vf vnearest(vf v) { return (v + 12582912.0f) - 12582912.0f; }

/* v_exp of ../ddpm_kernels.c, VL lanes. */
static inline vf vexp(vf x) {
  x = vmin(vmax(x, vsplat(-87.0f)), vsplat(87.0f));
  const vf n = vnearest(x * 1.44269504088896341f);
  vf r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vf p = vsplat(1.0f / 720.0f);
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const vi scale = (__builtin_convertvector(n, vi) + 127) << 23;
  return p * (vf)scale;
}

static inline vf vsigmoid(vf y) { return 1.0f / (1.0f + vexp(-y)); }

/* Pointers to a tile's 4×4 input patch, NULL outside the image. */
static void patch_rows(const float* xn, int h, int w, int c, int i0, int j0, const float* at[4][4]) {
  for (int r = 0; r < 4; r++)
    for (int s = 0; s < 4; s++) {
      const int i = i0 + r, j = j0 + s;
      at[r][s] = i < 0 || i >= h || j < 0 || j >= w ? NULL : xn + ((long)i * w + j) * c;
    }
}

/*
 * Where a block's transformed tiles lie: element (ξ, tile q, channel k) at ξ·pos + q·tile + k.
 * ../ddpm_kernels.c's blocks are by position, [16][nt][C] (pos = nt·C, tile = C); the wide
 * kernels' are by tile, [nt][16·C + TILE_PAD] (pos = C, tile = 16·C + TILE_PAD), so that each
 * tile's transform writes (and the output transform reads) one contiguous run. The pad (one cache
 * line) keeps the tiles, a product's rows, off a power-of-two stride: 16·C floats apart, the 64
 * tiles of a block of 64 channels all fell on one set of the L1 cache (4 KiB apart) and were
 * fetched again from L2 row after row (docs/performance.md has the figures).
 */
#define TILE_PAD 16

typedef struct {
  long pos, tile;
} wino_layout;

static inline wino_layout by_position(int nt, int c) { return (wino_layout){(long)nt * c, c}; }
static inline wino_layout by_tile(int c) { return (wino_layout){c, 16L * c + TILE_PAD}; }

/*
 * input_block for channels k0 … k1 − 1 (multiples of VL, or the whole of any c), into v laid out
 * as `lay` (with k1 − k0 channels); where c is not a multiple of VL, input_block (by position).
 */
static void wide_input_block(const float* x, int h, int w, int c, int k0, int k1, long t0, int nt, float* v,
                             wino_layout lay) {
  if (c % VL != 0) {
    input_block(x, h, w, c, t0, nt, v);
    return;
  }
  const long stride = lay.pos;
  const vf zero = vsplat(0.0f);
  for (int q = 0; q < nt; q++) {
    const tile_pos tp = tile_at(t0 + q, h, w);
    const float* at[4][4];
    patch_rows(x + tp.n * h * w * c, h, w, c, tp.i0 - 1, tp.j0 - 1, at);
    for (int k = k0; k < k1; k += VL) {
      float* vq = v + q * lay.tile + (k - k0);
      vf u[4][4];
      for (int r = 0; r < 4; r++) {
        vf d[4];
        for (int s = 0; s < 4; s++) d[s] = at[r][s] ? vload(at[r][s] + k) : zero;
        u[r][0] = d[0] - d[2];
        u[r][1] = d[1] + d[2];
        u[r][2] = d[2] - d[1];
        u[r][3] = d[1] - d[3];
      }
      for (int s = 0; s < 4; s++) {
        vstore(vq + (0 * 4 + s) * stride, u[0][s] - u[2][s]);
        vstore(vq + (1 * 4 + s) * stride, u[1][s] + u[2][s]);
        vstore(vq + (2 * 4 + s) * stride, u[2][s] - u[1][s]);
        vstore(vq + (3 * 4 + s) * stride, u[1][s] - u[3][s]);
      }
    }
  }
}

static void wide_output_block(const float* m, wino_layout lay, const conv_addends* add, int h, int w, int c, long t0,
                              int nt, float* y) {
  if (c % VL != 0) {
    output_block(m, add, h, w, c, t0, nt, y);
    return;
  }
  const long stride = lay.pos;
  for (int q = 0; q < nt; q++) {
    const tile_pos tp = tile_at(t0 + q, h, w);
    const long n = tp.n;
    const int i0 = tp.i0, j0 = tp.j0;
    for (int k = 0; k < c; k += VL) {
      const float* mq = m + q * lay.tile + k;
      vf u[2][4];
      for (int s = 0; s < 4; s++) {
        const vf m0 = vload(mq + (0 * 4 + s) * stride), m1 = vload(mq + (1 * 4 + s) * stride);
        const vf m2 = vload(mq + (2 * 4 + s) * stride), m3 = vload(mq + (3 * 4 + s) * stride);
        u[0][s] = (m0 + m1) + m2;
        u[1][s] = (m1 - m2) - m3;
      }
      const vf bias = add->bias ? vload(add->bias + k) : vsplat(0.0f);
      const float* image_bias = add->image_bias ? add->image_bias + n * c + k : 0;
      for (int r = 0; r < 2; r++) {
        if (i0 + r >= h) break;
        const long at = (n * h * w + (long)(i0 + r) * w + j0) * c + k;
        vf v[2] = {(u[r][0] + u[r][1]) + u[r][2], (u[r][1] - u[r][2]) - u[r][3]};
        for (int s = 0; s < 2 && j0 + s < w; s++) {
          v[s] = v[s] + bias;
          if (image_bias) v[s] = v[s] + vload(image_bias);
          if (add->residual) v[s] = v[s] + vload(add->residual + at + s * c);
          vstore(y + at + s * c, v[s]);
        }
      }
    }
  }
}

static void wide_output_grad_block(const float* dy, int h, int w, int c, long t0, int nt, float* dm, wino_layout lay) {
  if (c % VL != 0) {
    output_grad_block(dy, h, w, c, t0, nt, dm);
    return;
  }
  const long stride = lay.pos;
  const vf zero = vsplat(0.0f);
  for (int q = 0; q < nt; q++) {
    const tile_pos tp = tile_at(t0 + q, h, w);
    const long n = tp.n;
    const int i0 = tp.i0, j0 = tp.j0;
    const int down = i0 + 1 < h, right = j0 + 1 < w;
    for (int k = 0; k < c; k += VL) {
      const float* p = dy + ((n * h + i0) * (long)w + j0) * c + k;
      const vf g00 = vload(p);
      const vf g01 = right ? vload(p + c) : zero;
      const vf g10 = down ? vload(p + (long)w * c) : zero;
      const vf g11 = down && right ? vload(p + (long)w * c + c) : zero;
      const vf a[4][2] = {{g00, g01}, {g00 + g10, g01 + g11}, {g00 - g10, g01 - g11}, {-g10, -g11}};
      float* out = dm + q * lay.tile + k;
      for (int r = 0; r < 4; r++) {
        vstore(out + (r * 4 + 0) * stride, a[r][0]);
        vstore(out + (r * 4 + 1) * stride, a[r][0] + a[r][1]);
        vstore(out + (r * 4 + 2) * stride, a[r][0] - a[r][1]);
        vstore(out + (r * 4 + 3) * stride, -a[r][1]);
      }
    }
  }
}

/*
 * acc[k] = Σ_p x[p][k] (or Σ_p (x[p][k] − shift[k])²), p ascending: channel_sums of
 * ../ddpm_kernels.c, NV vectors of channels (a constant where it is inlined) in registers per pass.
 */
static inline __attribute__((always_inline)) void sums_pass(const int NV, const float* x, int hw, int c,
                                                            float* acc, const float* shift) {
  vf a[2], s[2];
  for (int i = 0; i < NV; i++) {
    a[i] = vsplat(0.0f);
    s[i] = shift ? vload(shift + i * VL) : vsplat(0.0f);
  }
  for (long i0 = 0; i0 < (long)hw * c; i0 += c)
    for (int i = 0; i < NV; i++) {
      vf v = vload(x + i0 + i * VL);
      if (shift) {
        v = v - s[i];
        v = v * v;
      }
      a[i] = a[i] + v;
    }
  for (int i = 0; i < NV; i++) vstore(acc + i * VL, a[i]);
}

static void wide_channel_sums(const float* x, int hw, int c, float* acc, const float* shift) {
  int k = 0;
  for (; k + 2 * VL <= c; k += 2 * VL) sums_pass(2, x + k, hw, c, acc + k, shift ? shift + k : 0);
  if (k < c) sums_pass(1, x + k, hw, c, acc + k, shift ? shift + k : 0);
}

typedef struct {
  const float *x, *gamma, *beta, *dy, *sig, *out_in, *mean_in, *rstd_in;
  int hw, c, groups, swish;
  float eps;
  float *out, *sig_out, *mean, *rstd, *dx, *part_gamma, *part_beta;
} norm_job;

/* group_norm_forward of ../ddpm_kernels.c for one image. */
static void norm_forward_image(void* ctx, long n, float* scratch) {
  const norm_job* j = ctx;
  const int c = j->c, hw = j->hw;
  const float* xn = j->x + n * hw * c;
  float* mn = j->mean + n * c;
  float* rn = j->rstd + n * c;
  float* scale = scratch;
  float* shift = scratch + c;
  wide_channel_sums(xn, hw, c, mn, 0);
  group_means(mn, c, j->groups, (float)hw);
  wide_channel_sums(xn, hw, c, rn, mn);
  group_means(rn, c, j->groups, (float)hw);
  for (int k = 0; k < c; k++) {
    rn[k] = 1.0f / __builtin_sqrtf(rn[k] + j->eps);
    scale[k] = j->gamma[k] * rn[k];
    shift[k] = j->beta[k] - mn[k] * scale[k];
  }
  float* on = j->out + n * hw * c;
  float* sn = j->swish && j->sig_out ? j->sig_out + n * hw * c : 0;
  for (long i = 0; i < (long)hw * c; i += c)
    for (int k = 0; k < c; k += VL) {
      const vf y = vload(xn + i + k) * vload(scale + k) + vload(shift + k);
      if (j->swish) {
        const vf s = vsigmoid(y);
        if (sn) vstore(sn + i + k, s);
        vstore(on + i + k, y * s);
      } else {
        vstore(on + i + k, y);
      }
    }
}

void native_group_norm_forward(const float* x, int b, int hw, int c, int groups, const float* gamma,
                               const float* beta, float eps, int swish, float* out, float* sig, float* mean,
                               float* rstd, float* scratch) {
  const norm_job job = {.x = x, .gamma = gamma, .beta = beta, .hw = hw, .c = c, .groups = groups, .swish = swish,
                        .eps = eps, .out = out, .sig_out = sig, .mean = mean, .rstd = rstd};
  if (c % VL != 0 || pool_run(b, norm_forward_image, (void*)&job, 2L * c) != 0)
    group_norm_forward(x, b, hw, c, groups, gamma, beta, eps, swish, out, sig, mean, rstd, scratch);
}

/* upstream() of ../ddpm_kernels.c, VL lanes. */
static inline vf wide_upstream(const norm_job* j, long i) {
  const vf d = vload(j->dy + i);
  if (!j->swish) return d;
  const vf s = vload(j->sig + i), o = vload(j->out_in + i);
  return d * ((s + o) - o * s);
}

/* Σ_p g and Σ_p g·x of one image over channels k … k + NV·VL − 1, p ascending. */
static inline __attribute__((always_inline)) void grad_sums_pass(const int NV, const norm_job* j, long off, int k,
                                                                 float* sum_g, float* sum_gx) {
  vf ag[2], agx[2];
  for (int i = 0; i < NV; i++) ag[i] = agx[i] = vsplat(0.0f);
  for (long i0 = off + k; i0 < off + (long)j->hw * j->c; i0 += j->c)
    for (int i = 0; i < NV; i++) {
      const vf g = wide_upstream(j, i0 + i * VL);
      ag[i] = ag[i] + g;
      agx[i] = agx[i] + g * vload(j->x + i0 + i * VL);
    }
  for (int i = 0; i < NV; i++) {
    vstore(sum_g + k + i * VL, ag[i]);
    vstore(sum_gx + k + i * VL, agx[i]);
  }
}

/*
 * group_norm_backward of ../ddpm_kernels.c for one image; its terms of dγ and dβ go to
 * part_gamma and part_beta [B][C], which native_group_norm_backward sums over the images in order.
 */
static void norm_backward_image(void* ctx, long n, float* scratch) {
  const norm_job* j = ctx;
  const int c = j->c, hw = j->hw;
  const long off = n * hw * c;
  const float* mn = j->mean_in + n * c;
  const float* rn = j->rstd_in + n * c;
  float* sum_g = scratch;
  float* sum_gx = scratch + c;
  float* constant = scratch + 2 * c;
  int k = 0;
  for (; k + 2 * VL <= c; k += 2 * VL) grad_sums_pass(2, j, off, k, sum_g, sum_gx);
  if (k < c) grad_sums_pass(1, j, off, k, sum_g, sum_gx);
  const int per = c / j->groups;
  for (int gi = 0; gi < j->groups; gi++) {
    float m1 = 0.0f, m2 = 0.0f;
    for (int q = 0; q < per; q++) {
      const int k = gi * per + q;
      const float mean_g = sum_g[k] / (float)hw;
      const float mean_gxhat = rn[k] * (sum_gx[k] / (float)hw - mn[k] * mean_g);
      j->part_beta[n * c + k] = sum_g[k];
      j->part_gamma[n * c + k] = mean_gxhat * (float)hw;
      m1 += mean_g * j->gamma[k];
      m2 += mean_gxhat * j->gamma[k];
    }
    m1 /= (float)per;
    m2 /= (float)per;
    for (int q = 0; q < per; q++) {
      const int k = gi * per + q;
      const float r = rn[k];
      sum_g[k] = r * j->gamma[k];
      sum_gx[k] = -r * r * m2;
      constant[k] = r * r * m2 * mn[k] - r * m1;
    }
  }
  for (long i = off; i < off + (long)hw * c; i += c)
    for (int k = 0; k < c; k += VL) {
      const vf g = wide_upstream(j, i + k);
      const vf v = g * vload(sum_g + k) + vload(j->x + i + k) * vload(sum_gx + k);
      vstore(j->dx + i + k, v + vload(constant + k));
    }
}

void native_group_norm_backward(const float* dy, const float* x, const float* sig, const float* out, int b, int hw,
                                int c, int groups, const float* gamma, const float* mean, const float* rstd, int swish,
                                float* dx, float* dgamma, float* dbeta, float* scratch) {
  float* parts = c % VL == 0 ? malloc(2 * sizeof(float) * b * c) : NULL;
  const norm_job job = {.x = x, .gamma = gamma, .dy = dy, .sig = sig, .out_in = out, .mean_in = mean,
                        .rstd_in = rstd, .hw = hw, .c = c, .groups = groups, .swish = swish, .dx = dx,
                        .part_gamma = parts, .part_beta = parts ? parts + (long)b * c : NULL};
  if (parts == NULL || pool_run(b, norm_backward_image, (void*)&job, 3L * c) != 0) {
    free(parts);
    group_norm_backward(dy, x, sig, out, b, hw, c, groups, gamma, mean, rstd, swish, dx, dgamma, dbeta, scratch);
    return;
  }
  for (int k = 0; k < c; k++) dgamma[k] = dbeta[k] = 0.0f;
  for (int n = 0; n < b; n++)
    for (int k = 0; k < c; k++) {
      dbeta[k] += job.part_beta[(long)n * c + k];
      dgamma[k] += job.part_gamma[(long)n * c + k];
    }
  free(parts);
}

/* ---- Winograd convolution: blocks of tiles on the pool ------------------------------------ */

typedef struct {
  const float *x, *u, *dy;
  conv_addends add;
  int b, h, w, cin, cout;
  long tiles;
  float *y, *du;
  int groups; /* of the 16 positions, for the filter gradient */
} winograd_job;

/* Scratch of a block: the input's and the output's transforms, each by tile. */
static long block_scratch(int cin, int cout) { return 16L * WINO_BLOCK * (cin + cout) + 2L * WINO_BLOCK * TILE_PAD; }

static int block_tiles(const winograd_job* j, long t0) {
  return (int)(j->tiles - t0 < WINO_BLOCK ? j->tiles - t0 : WINO_BLOCK);
}

static void conv_block(void* ctx, long task, float* scratch) {
  const winograd_job* j = ctx;
  const long t0 = task * WINO_BLOCK;
  const int nt = block_tiles(j, t0);
  float* v = scratch;
  float* m = scratch + (16L * j->cin + TILE_PAD) * WINO_BLOCK;
  const int tiled = j->cin % VL == 0 && j->cout % VL == 0;
  const wino_layout in = tiled ? by_tile(j->cin) : by_position(nt, j->cin);
  const wino_layout out = tiled ? by_tile(j->cout) : by_position(nt, j->cout);
  wide_input_block(j->x, j->h, j->w, j->cin, 0, j->cin, t0, nt, v, in);
  /* Rows of a product are tiles: in.tile (and out.tile) apart. */
  for (int xi = 0; xi < 16; xi++)
    gemm_wide(v + xi * in.pos, in.tile, j->u + (long)xi * j->cin * j->cout, j->cout, nt, j->cin, j->cout,
              m + xi * out.pos, out.tile, 0);
  wide_output_block(m, out, &j->add, j->h, j->w, j->cout, t0, nt, j->y);
}

void native_winograd_conv(const float* x, const float* u, const float* bias, const float* image_bias,
                          const float* residual, int b, int h, int w, int cin, int cout, float* y, float* scratch) {
  const winograd_job job = {.x = x, .u = u, .add = {bias, image_bias, residual}, .b = b, .h = h, .w = w,
                            .cin = cin, .cout = cout,
                            .tiles = (long)b * ((h + 1) / 2) * ((w + 1) / 2), .y = y};
  const long blocks = (job.tiles + WINO_BLOCK - 1) / WINO_BLOCK;
  if (pool_run(blocks, conv_block, (void*)&job, block_scratch(cin, cout)) != 0)
    winograd_conv(x, u, bias, image_bias, residual, b, h, w, cin, cout, y, scratch);
}

/*
 * The filter gradient's products on the pool: each task takes a range of input channels (rows of
 * every dU[ξ]), transforming only those channels of x, and all of dy, block by block; the sum over
 * tiles stays in ascending order, so any number of tasks gives the same bits. Where Cin is not a
 * multiple of VL, one task does all.
 */
static void filter_channels(void* ctx, long task, float* scratch) {
  const winograd_job* j = ctx;
  const int whole = j->cin % VL != 0, units = j->cin / VL;
  const int k0 = whole ? 0 : (int)(task * units / j->groups) * VL;
  const int k1 = whole ? j->cin : (int)((task + 1) * units / j->groups) * VL;
  const int ck = k1 - k0, tiled = !whole && j->cout % VL == 0;
  float* v = scratch;
  float* dm = scratch + (16L * j->cin + TILE_PAD) * WINO_BLOCK;
  for (long t0 = 0; t0 < j->tiles; t0 += WINO_BLOCK) {
    const int nt = block_tiles(j, t0);
    const wino_layout in = tiled ? by_tile(ck) : by_position(nt, ck);
    const wino_layout out = tiled ? by_tile(j->cout) : by_position(nt, j->cout);
    wide_input_block(j->x, j->h, j->w, j->cin, k0, k1, t0, nt, v, in);
    wide_output_grad_block(j->dy, j->h, j->w, j->cout, t0, nt, dm, out);
    /* The sums run over tiles: in.tile (and out.tile) apart. */
    for (int xi = 0; xi < 16; xi++)
      gemm_tn_wide(v + xi * in.pos, in.tile, dm + xi * out.pos, out.tile, nt, 0, ck, j->cout,
                   j->du + ((long)xi * j->cin + k0) * j->cout, j->cout);
  }
}

void native_winograd_filter_products(const float* x, const float* dy, int b, int h, int w, int cin, int cout, float* du,
                                     float* scratch) {
  const int threads = pool_threads(), units = cin % VL == 0 ? cin / VL : 1;
  const winograd_job job = {.x = x, .dy = dy, .b = b, .h = h, .w = w, .cin = cin, .cout = cout,
                            .tiles = (long)b * ((h + 1) / 2) * ((w + 1) / 2), .du = du,
                            .groups = threads < units ? threads : units};
  zero_floats(du, 16L * cin * cout);
  if (pool_run(job.groups, filter_channels, (void*)&job, block_scratch(cin, cout)) != 0)
    winograd_filter_products(x, dy, b, h, w, cin, cout, du, scratch);
}

/* ---- the batched products of attention ------------------------------------------------------ */

typedef struct {
  const float *a, *b, *bias, *residual;
  int batch, m, k, n, t, chunks;
  float* out;
} matmul_job;

/* Rows of the output per task. */
#define MATMUL_ROWS 32

static void matmul_nn_rows(void* ctx, long task, float* scratch) {
  const matmul_job* j = ctx;
  const int z = (int)(task / j->chunks), r0 = (int)(task % j->chunks) * MATMUL_ROWS;
  const int rows = j->m - r0 < MATMUL_ROWS ? j->m - r0 : MATMUL_ROWS;
  const long first = ((long)z * j->m + r0) * j->n;
  gemm_wide(j->a + ((long)z * j->m + r0) * j->k, j->k, j->b + (long)z * j->k * j->n, j->n, rows, j->k, j->n,
            j->out + first, j->n, 0);
  add_to_rows(j->out + first, j->bias, j->residual ? j->residual + first : 0, rows, j->n);
}

void native_matmul_nn(const float* a, const float* b, const float* bias, const float* residual, int batch, int m, int k,
                      int n, float* out) {
  const matmul_job job = {.a = a, .b = b, .bias = bias, .residual = residual, .batch = batch, .m = m, .k = k, .n = n,
                          .chunks = (m + MATMUL_ROWS - 1) / MATMUL_ROWS, .out = out};
  if (pool_run((long)batch * job.chunks, matmul_nn_rows, (void*)&job, 0) != 0)
    matmul_nn(a, b, bias, residual, batch, m, k, n, out);
}

/* out[z][i][j] = Σ_t a[z][t][i]·b[z][t][j] for rows i of one task, t ascending in TN_CHUNK steps as matmul_tn. */
static void matmul_tn_rows(void* ctx, long task, float* scratch) {
  const matmul_job* j = ctx;
  const int z = (int)(task / j->chunks), i0 = (int)(task % j->chunks) * MATMUL_ROWS;
  const int i1 = j->m - i0 < MATMUL_ROWS ? j->m : i0 + MATMUL_ROWS;
  const float* az = j->a + (long)z * j->t * j->m;
  const float* bz = j->b + (long)z * j->t * j->n;
  float* o = j->out + (long)z * j->m * j->n;
  zero_floats(o + (long)i0 * j->n, (long)(i1 - i0) * j->n);
  for (int p0 = 0; p0 < j->t; p0 += TN_CHUNK) {
    const int rows = p0 + TN_CHUNK < j->t ? TN_CHUNK : j->t - p0;
    gemm_tn_wide(az + (long)p0 * j->m, j->m, bz + (long)p0 * j->n, j->n, rows, i0, i1, j->n, o, j->n);
  }
}

void native_matmul_tn(const float* a, const float* b, int batch, int t, int m, int n, float* out) {
  const matmul_job job = {.a = a, .b = b, .batch = batch, .m = m, .t = t, .n = n,
                          .chunks = (m + MATMUL_ROWS - 1) / MATMUL_ROWS, .out = out};
  if (pool_run((long)batch * job.chunks, matmul_tn_rows, (void*)&job, 0) != 0) matmul_tn(a, b, batch, t, m, n, out);
}

/* ---- softmax: rows on the pool ------------------------------------------------------------ */

typedef struct {
  const float* x;
  int rows, n;
  float* y;
} softmax_job;

/* Rows per task. */
#define SOFTMAX_ROWS 16

/* softmax of ../ddpm_kernels.c for SOFTMAX_ROWS rows: its 16 partial sums, VL lanes at a time. */
static void softmax_rows(void* ctx, long task, float* scratch) {
  const softmax_job* j = ctx;
  const int n = j->n;
  const long r1 = (task + 1) * SOFTMAX_ROWS < j->rows ? (task + 1) * SOFTMAX_ROWS : j->rows;
  for (long r = task * SOFTMAX_ROWS; r < r1; r++) {
    const float* xr = j->x + r * n;
    float* yr = j->y + r * n;
    const float m = row_max(xr, n);
    vf a[16 / VL];
    for (int i = 0; i < 16 / VL; i++) a[i] = vsplat(0.0f);
    int k = 0;
    for (; k + 16 <= n; k += 16)
      for (int i = 0; i < 16 / VL; i++) {
        const vf e = vexp(vload(xr + k + i * VL) - m);
        vstore(yr + k + i * VL, e);
        a[i] = a[i] + e;
      }
    v128_t q[4];
    memcpy(q, a, sizeof q);
    const float r = 1.0f / softmax_tail(xr, k, n, m, yr, softmax_fold(q[0], q[1], q[2], q[3]));
    k = 0;
    for (; k + VL <= n; k += VL) vstore(yr + k, vload(yr + k) * r);
    for (; k < n; k++) yr[k] = yr[k] * r;
  }
}

void native_softmax(const float* x, int rows, int n, float* y) {
  const softmax_job job = {.x = x, .rows = rows, .n = n, .y = y};
  if (pool_run((rows + SOFTMAX_ROWS - 1) / SOFTMAX_ROWS, softmax_rows, (void*)&job, 0) != 0) softmax(x, rows, n, y);
}

/* ---- direct convolution: blocks of pixels on the pool ---------------------------------- */

typedef struct {
  const float *x, *g, *bias;
  conv_shape s;
  long pixels;
  float* y;
} direct_job;

static void direct_block(void* ctx, long task, float* scratch) {
  const direct_job* j = ctx;
  const long p0 = task * CONV_BLOCK;
  const int np = (int)(j->pixels - p0 < CONV_BLOCK ? j->pixels - p0 : CONV_BLOCK);
  const int kk = j->s.k * j->s.k * j->s.cin;
  gather_patches(j->x, &j->s, p0, np, scratch, kk);
  gemm_wide(scratch, kk, j->g, j->s.cout, np, kk, j->s.cout, j->y + p0 * j->s.cout, j->s.cout, 0);
  add_to_rows(j->y + p0 * j->s.cout, j->bias, 0, np, j->s.cout);
}

void native_direct_conv(const float* x, const float* g, const float* bias, int b, int h, int w, int cin, int k,
                        int stride, int pad_top, int pad_left, int ho, int wo, int cout, float* y, float* scratch) {
  const direct_job job = {.x = x, .g = g, .bias = bias, .s = {b, h, w, cin, k, stride, pad_top, pad_left, ho, wo, cout},
                          .pixels = (long)b * ho * wo, .y = y};
  const long blocks = (job.pixels + CONV_BLOCK - 1) / CONV_BLOCK;
  if (pool_run(blocks, direct_block, (void*)&job, (long)CONV_BLOCK * k * k * cin) != 0)
    direct_conv(x, g, bias, b, h, w, cin, k, stride, pad_top, pad_left, ho, wo, cout, y, scratch);
}

/* The filter gradient: each task sums a range of the patches' columns (rows of dg), over every pixel in order. */
typedef struct {
  const float *x, *dy, *g;
  conv_shape s;
  long pixels;
  int row, groups;
  float *sums, *gt, *dx;
} direct_grad_job;

static void direct_filter_rows(void* ctx, long task, float* scratch) {
  const direct_grad_job* j = ctx;
  const int units = j->row / 4;
  const int i0 = (int)(task * units / j->groups) * 4, i1 = (int)((task + 1) * units / j->groups) * 4;
  for (long p0 = 0; p0 < j->pixels; p0 += CONV_BLOCK) {
    const int np = (int)(j->pixels - p0 < CONV_BLOCK ? j->pixels - p0 : CONV_BLOCK);
    gather_patches(j->x, &j->s, p0, np, scratch, j->row);
    gemm_tn_wide(scratch, j->row, j->dy + p0 * j->s.cout, j->s.cout, np, i0, i1, j->s.cout, j->sums, j->s.cout);
  }
}

void native_direct_conv_filter_grad(const float* x, const float* dy, int b, int h, int w, int cin, int k, int stride,
                                    int pad_top, int pad_left, int ho, int wo, int cout, float* dg, float* scratch) {
  const conv_shape s = {b, h, w, cin, k, stride, pad_top, pad_left, ho, wo, cout};
  const int row = patch_row4(&s), threads = pool_threads();
  direct_grad_job job = {.x = x, .dy = dy, .s = s, .pixels = (long)b * ho * wo, .row = row,
                         .groups = threads < row / 4 ? threads : row / 4, .sums = scratch + (long)CONV_BLOCK * row};
  zero_floats(job.sums, (long)row * cout);
  if (pool_run(job.groups, direct_filter_rows, (void*)&job, (long)CONV_BLOCK * row) != 0) {
    direct_conv_filter_grad(x, dy, b, h, w, cin, k, stride, pad_top, pad_left, ho, wo, cout, dg, scratch);
    return;
  }
  for (long i = 0; i < (long)k * k * cin * cout; i++) dg[i] = job.sums[i];
}

/* The input gradient: each task one image, its pixels in order (images' input gradients are disjoint). */
static void direct_input_image(void* ctx, long n, float* scratch) {
  const direct_grad_job* j = ctx;
  const long per = (long)j->s.ho * j->s.wo, image = (long)j->s.h * j->s.w * j->s.cin;
  for (long i = 0; i < image; i++) j->dx[n * image + i] = 0.0f;
  for (long p0 = n * per; p0 < (n + 1) * per; p0 += CONV_BLOCK) {
    const int np = (int)((n + 1) * per - p0 < CONV_BLOCK ? (n + 1) * per - p0 : CONV_BLOCK);
    gemm_wide(j->dy + p0 * j->s.cout, j->s.cout, j->gt, j->row, np, j->s.cout, j->row, scratch, j->row, 0);
    scatter_patches(scratch, &j->s, p0, np, j->row, j->dx);
  }
}

void native_direct_conv_input_grad(const float* dy, const float* g, int b, int h, int w, int cin, int k, int stride,
                                   int pad_top, int pad_left, int ho, int wo, int cout, float* dx, float* scratch) {
  const conv_shape s = {b, h, w, cin, k, stride, pad_top, pad_left, ho, wo, cout};
  const int row = patch_row4(&s);
  const direct_grad_job job = {.dy = dy, .s = s, .row = row, .gt = scratch + (long)CONV_BLOCK * row, .dx = dx};
  transpose_filter(g, k * k * cin, cout, row, job.gt);
  if (pool_run(b, direct_input_image, (void*)&job, (long)CONV_BLOCK * row) != 0)
    direct_conv_input_grad(dy, g, b, h, w, cin, k, stride, pad_top, pad_left, ho, wo, cout, dx, scratch);
}

/* Threads the kernels use, the caller's included. */
void native_set_threads(int threads) { pool_set_threads(threads); }
