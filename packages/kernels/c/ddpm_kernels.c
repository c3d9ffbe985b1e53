/*
 * SIMD kernels for the wasm backend, compiled by clang to a module that imports the tfjs-wasm
 * heap's memory (see ../src/ops/wasm-kernels.ts and build.cjs, which builds and checks it). Rules that keep it safe inside
 * another module's memory: no static data, no stack (no local arrays, no calls that spill), no
 * allocation; every buffer is a pointer the caller allocated from the tfjs heap.
 *
 * Layout NHWC: x[b][p][c] with p over H·W. C is a multiple of 4 and G divides C.
 */
#include <wasm_simd128.h>

/* The native build (native/build.cjs) includes native/wasm_simd128.h instead and exports through native/binding.c. */
#ifdef __wasm__
#define EXPORT(name) __attribute__((export_name(#name)))
#else
#define EXPORT(name)
#endif

/*
 * c + a·b in the products' inner loops (gemm_nn, gemm_tn_acc). Built twice (c/build.cjs):
 * with DDPM_FMA as one fused multiply-add, relaxed SIMD's f32x4.relaxed_madd (one rounding; V8
 * emits vfmadd on x64 CPUs with FMA3, mul then add elsewhere), and without it as a multiply then an
 * add, the only way in plain SIMD128. Nothing a group must compute identically on every rank (the
 * optimizer step) uses it: a pool mixing CPUs with and without FMA still keeps its ranks equal.
 */
#ifdef DDPM_FMA
#define MADD(a, b, c) __builtin_wasm_relaxed_madd_f32x4(a, b, c)
#else
#define MADD(a, b, c) wasm_f32x4_add(c, wasm_f32x4_mul(a, b))
#endif

/* e^x for x in [-87, 87] (clamped): 2^n · p(r), r = x − n·ln2, degree-6 Taylor, ~1e-7 relative. */
static inline v128_t v_exp(v128_t x) {
  x = wasm_f32x4_min(wasm_f32x4_max(x, wasm_f32x4_splat(-87.0f)), wasm_f32x4_splat(87.0f));
  const v128_t n = wasm_f32x4_nearest(wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269504088896341f)));
  v128_t r = wasm_f32x4_sub(x, wasm_f32x4_mul(n, wasm_f32x4_splat(0.693359375f)));
  r = wasm_f32x4_sub(r, wasm_f32x4_mul(n, wasm_f32x4_splat(-2.12194440e-4f)));
  v128_t p = wasm_f32x4_splat(1.0f / 720.0f);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f / 120.0f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f / 24.0f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f / 6.0f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(0.5f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f));
  const v128_t scale = wasm_i32x4_shl(wasm_i32x4_add(wasm_i32x4_trunc_sat_f32x4(n), wasm_i32x4_splat(127)), 23);
  return wasm_f32x4_mul(p, scale);
}

static inline v128_t v_sigmoid(v128_t y) {
  const v128_t one = wasm_f32x4_splat(1.0f);
  return wasm_f32x4_div(one, wasm_f32x4_add(one, v_exp(wasm_f32x4_neg(y))));
}

/* acc[c] = Σ_p x[p][c] (or Σ_p (x[p][c] − shift[c])² when shift is given), for one image. */
static void channel_sums(const float* x, int hw, int c, float* acc, const float* shift) {
  for (int k = 0; k < c; k += 4) wasm_v128_store(acc + k, wasm_f32x4_splat(0.0f));
  for (int p = 0; p < hw; p++) {
    const float* row = x + (long)p * c;
    for (int k = 0; k < c; k += 4) {
      v128_t v = wasm_v128_load(row + k);
      if (shift) {
        v = wasm_f32x4_sub(v, wasm_v128_load(shift + k));
        v = wasm_f32x4_mul(v, v);
      }
      wasm_v128_store(acc + k, wasm_f32x4_add(wasm_v128_load(acc + k), v));
    }
  }
}

/* Replaces each channel's value by the mean over its group's channels, divided by `count`. */
static void group_means(float* v, int c, int groups, float count) {
  const int per = c / groups;
  for (int g = 0; g < groups; g++) {
    float s = 0.0f;
    for (int k = 0; k < per; k++) s += v[g * per + k];
    s /= count * (float)per;
    for (int k = 0; k < per; k++) v[g * per + k] = s;
  }
}

/*
 * GroupNorm (+ swish) forward. Writes out (= y or swish(y)), sig (= σ(y), only when swish and sig
 * is given: the backward's), mean and rstd per image and channel ([B][C], repeated per group) and
 * uses scratch[2C].
 */
EXPORT(group_norm_forward)
void group_norm_forward(const float* x, int b, int hw, int c, int groups, const float* gamma, const float* beta,
                        float eps, int swish, float* out, float* sig, float* mean, float* rstd, float* scratch) {
  float* scale = scratch;
  float* shift = scratch + c;
  for (int n = 0; n < b; n++) {
    const float* xn = x + (long)n * hw * c;
    float* mn = mean + n * c;
    float* rn = rstd + n * c;
    channel_sums(xn, hw, c, mn, 0);
    group_means(mn, c, groups, (float)hw);
    channel_sums(xn, hw, c, rn, mn);
    group_means(rn, c, groups, (float)hw);
    for (int k = 0; k < c; k++) {
      rn[k] = 1.0f / __builtin_sqrtf(rn[k] + eps);
      scale[k] = gamma[k] * rn[k];
      shift[k] = beta[k] - mn[k] * scale[k];
    }
    float* on = out + (long)n * hw * c;
    float* sn = swish && sig ? sig + (long)n * hw * c : 0;
    for (int p = 0; p < hw; p++) {
      const long base = (long)p * c;
      for (int k = 0; k < c; k += 4) {
        const v128_t y = wasm_f32x4_add(wasm_f32x4_mul(wasm_v128_load(xn + base + k), wasm_v128_load(scale + k)),
                                        wasm_v128_load(shift + k));
        if (swish) {
          const v128_t s = v_sigmoid(y);
          if (sn) wasm_v128_store(sn + base + k, s);
          wasm_v128_store(on + base + k, wasm_f32x4_mul(y, s));
        } else {
          wasm_v128_store(on + base + k, y);
        }
      }
    }
  }
}

/* g = dy, or dy·(σ + o − o·σ) — the swish derivative from σ(y) and the output o = y·σ(y). */
static inline v128_t upstream(const float* dy, const float* sig, const float* out, long i, int swish) {
  const v128_t d = wasm_v128_load(dy + i);
  if (!swish) return d;
  const v128_t s = wasm_v128_load(sig + i);
  const v128_t o = wasm_v128_load(out + i);
  return wasm_f32x4_mul(d, wasm_f32x4_sub(wasm_f32x4_add(s, o), wasm_f32x4_mul(o, s)));
}

/*
 * GroupNorm (+ swish) backward: dx, and dgamma/dbeta summed over the batch. sig and out are the
 * forward's (ignored without swish); scratch[3C].
 * With g the gradient at y, x̂ = (x − μ)·rstd: dx = rstd·(γg − mean_grp(γg) − x̂·mean_grp(γg·x̂)),
 * expanded as dx = g·(γ·rstd) + x·A + K with per-channel A and K.
 */
EXPORT(group_norm_backward)
void group_norm_backward(const float* dy, const float* x, const float* sig, const float* out, int b, int hw, int c,
                         int groups, const float* gamma, const float* mean, const float* rstd, int swish, float* dx,
                         float* dgamma, float* dbeta, float* scratch) {
  float* sum_g = scratch;          /* Σ_p g, then coef of g */
  float* sum_gx = scratch + c;     /* Σ_p g·x, then coef of x */
  float* constant = scratch + 2 * c;
  for (int k = 0; k < c; k++) dgamma[k] = dbeta[k] = 0.0f;
  for (int n = 0; n < b; n++) {
    const long off = (long)n * hw * c;
    const float* mn = mean + n * c;
    const float* rn = rstd + n * c;
    for (int k = 0; k < c; k += 4) {
      wasm_v128_store(sum_g + k, wasm_f32x4_splat(0.0f));
      wasm_v128_store(sum_gx + k, wasm_f32x4_splat(0.0f));
    }
    for (int p = 0; p < hw; p++) {
      const long base = off + (long)p * c;
      for (int k = 0; k < c; k += 4) {
        const v128_t g = upstream(dy, sig, out, base + k, swish);
        wasm_v128_store(sum_g + k, wasm_f32x4_add(wasm_v128_load(sum_g + k), g));
        wasm_v128_store(sum_gx + k, wasm_f32x4_add(wasm_v128_load(sum_gx + k), wasm_f32x4_mul(g, wasm_v128_load(x + base + k))));
      }
    }
    const int per = c / groups;
    for (int gi = 0; gi < groups; gi++) {
      float m1 = 0.0f, m2 = 0.0f;
      for (int j = 0; j < per; j++) {
        const int k = gi * per + j;
        const float mean_g = sum_g[k] / (float)hw;
        const float mean_gxhat = rn[k] * (sum_gx[k] / (float)hw - mn[k] * mean_g);
        dbeta[k] += sum_g[k];
        dgamma[k] += mean_gxhat * (float)hw;
        m1 += mean_g * gamma[k];
        m2 += mean_gxhat * gamma[k];
      }
      m1 /= (float)per;
      m2 /= (float)per;
      for (int j = 0; j < per; j++) {
        const int k = gi * per + j;
        const float r = rn[k];
        sum_g[k] = r * gamma[k];
        sum_gx[k] = -r * r * m2;
        constant[k] = r * r * m2 * mn[k] - r * m1;
      }
    }
    for (int p = 0; p < hw; p++) {
      const long base = off + (long)p * c;
      for (int k = 0; k < c; k += 4) {
        const v128_t g = upstream(dy, sig, out, base + k, swish);
        v128_t v = wasm_f32x4_mul(g, wasm_v128_load(sum_g + k));
        v = wasm_f32x4_add(v, wasm_f32x4_mul(wasm_v128_load(x + base + k), wasm_v128_load(sum_gx + k)));
        wasm_v128_store(dx + base + k, wasm_f32x4_add(v, wasm_v128_load(constant + k)));
      }
    }
  }
}

/* ---- layout kernels ---------------------------------------------------------------------- */

/* Four rows of four floats, transposed in registers. */
static inline void transpose4(v128_t* r0, v128_t* r1, v128_t* r2, v128_t* r3) {
  const v128_t t0 = wasm_i32x4_shuffle(*r0, *r1, 0, 4, 1, 5);
  const v128_t t1 = wasm_i32x4_shuffle(*r0, *r1, 2, 6, 3, 7);
  const v128_t t2 = wasm_i32x4_shuffle(*r2, *r3, 0, 4, 1, 5);
  const v128_t t3 = wasm_i32x4_shuffle(*r2, *r3, 2, 6, 3, 7);
  *r0 = wasm_i32x4_shuffle(t0, t2, 0, 1, 4, 5);
  *r1 = wasm_i32x4_shuffle(t0, t2, 2, 3, 6, 7);
  *r2 = wasm_i32x4_shuffle(t1, t3, 0, 1, 4, 5);
  *r3 = wasm_i32x4_shuffle(t1, t3, 2, 3, 6, 7);
}

/*
 * out[ch][i][j][n] = x[n][i − top][j − left][ch], zero outside x: x [B, H, W, C] padded and
 * transposed to [C, H2, W2, B] (the filter gradient's batch-as-channels layout) in one pass.
 */
EXPORT(pad_to_channels_first)
void pad_to_channels_first(const float* x, int b, int h, int w, int c, int top, int left, int h2, int w2, float* out) {
  const long plane = (long)h2 * w2 * b;
  const int simd = (b % 4 == 0) && (c % 4 == 0);
  for (int i = 0; i < h2; i++) {
    const int si = i - top;
    for (int j = 0; j < w2; j++) {
      const int sj = j - left;
      float* dst = out + ((long)i * w2 + j) * b;
      if (si < 0 || si >= h || sj < 0 || sj >= w) {
        for (int ch = 0; ch < c; ch++) {
          for (int n = 0; n < b; n++) dst[ch * plane + n] = 0.0f;
        }
        continue;
      }
      const long stride = (long)h * w * c; /* from image n to n + 1 */
      const float* src = x + ((long)si * w + sj) * c;
      if (simd) {
        for (int n = 0; n < b; n += 4) {
          for (int ch = 0; ch < c; ch += 4) {
            v128_t r0 = wasm_v128_load(src + (n + 0) * stride + ch);
            v128_t r1 = wasm_v128_load(src + (n + 1) * stride + ch);
            v128_t r2 = wasm_v128_load(src + (n + 2) * stride + ch);
            v128_t r3 = wasm_v128_load(src + (n + 3) * stride + ch);
            transpose4(&r0, &r1, &r2, &r3);
            wasm_v128_store(dst + (ch + 0) * plane + n, r0);
            wasm_v128_store(dst + (ch + 1) * plane + n, r1);
            wasm_v128_store(dst + (ch + 2) * plane + n, r2);
            wasm_v128_store(dst + (ch + 3) * plane + n, r3);
          }
        }
      } else {
        for (int n = 0; n < b; n++) {
          for (int ch = 0; ch < c; ch++) dst[ch * plane + n] = src[n * stride + ch];
        }
      }
    }
  }
}

/* One 4×4 block: dst rows j..j+3 (cols i..i+3) from src rows i..i+3 (cols j..j+3). */
static inline void transpose_block4(const float* s, float* d, long m, long n, long i, long j) {
  v128_t r0 = wasm_v128_load(s + (i + 0) * n + j);
  v128_t r1 = wasm_v128_load(s + (i + 1) * n + j);
  v128_t r2 = wasm_v128_load(s + (i + 2) * n + j);
  v128_t r3 = wasm_v128_load(s + (i + 3) * n + j);
  transpose4(&r0, &r1, &r2, &r3);
  wasm_v128_store(d + (j + 0) * m + i, r0);
  wasm_v128_store(d + (j + 1) * m + i, r1);
  wasm_v128_store(d + (j + 2) * m + i, r2);
  wasm_v128_store(d + (j + 3) * m + i, r3);
}

/*
 * dst[k][j][i] = src[k][i][j] for k < batch: the last two axes of [batch, m, n] swapped. With
 * both sides multiples of 16 it moves 16×16 blocks along the destination's rows, so the output is
 * written as 16 sequential streams of whole cache lines. (Written a quarter line at a time, rows a
 * power of two apart evict each other between quarters: several times slower on [16, 4096, 32].)
 */
EXPORT(transpose_last2)
void transpose_last2(const float* src, int batch, int m, int n, float* dst) {
  const int simd = (m % 4 == 0) && (n % 4 == 0);
  const int lines = (m % 16 == 0) && (n % 16 == 0);
  for (int k = 0; k < batch; k++) {
    const float* s = src + (long)k * m * n;
    float* d = dst + (long)k * m * n;
    if (!simd) {
      for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) d[(long)j * m + i] = s[(long)i * n + j];
      }
      continue;
    }
    if (lines) {
      for (long j = 0; j < n; j += 16) {
        for (long i = 0; i < m; i += 16) {
          for (long bi = 0; bi < 16; bi += 4) {
            for (long bj = 0; bj < 16; bj += 4) transpose_block4(s, d, m, n, i + bi, j + bj);
          }
        }
      }
      continue;
    }
    for (int j0 = 0; j0 < n; j0 += 64) {
      const int j1 = j0 + 64 < n ? j0 + 64 : n;
      for (int i = 0; i < m; i += 4) {
        for (int j = j0; j < j1; j += 4) transpose_block4(s, d, m, n, i, j);
      }
    }
  }
}

static inline void copy_floats(float* dst, const float* src, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(dst + i, wasm_v128_load(src + i));
  for (; i < n; i++) dst[i] = src[i];
}

/* [P, ca + cb] → [P, ca] and [P, cb] (the gradient of a channel concatenation). */
EXPORT(split_channels)
void split_channels(const float* src, int pixels, int ca, int cb, float* a, float* b) {
  for (long p = 0; p < pixels; p++) {
    copy_floats(a + p * ca, src + p * (ca + cb), ca);
    copy_floats(b + p * cb, src + p * (ca + cb) + ca, cb);
  }
}

/* [P, ca] and [P, cb] → [P, ca + cb]. */
EXPORT(concat_channels)
void concat_channels(const float* a, const float* b, int pixels, int ca, int cb, float* out) {
  for (long p = 0; p < pixels; p++) {
    copy_floats(out + p * (ca + cb), a + p * ca, ca);
    copy_floats(out + p * (ca + cb) + ca, b + p * cb, cb);
  }
}

/* ---- dropout and softmax ------------------------------------------------------------------ */

/* A 32-bit integer hash (lowbias32), four lanes at a time. */
static inline v128_t hash4(v128_t x) {
  x = wasm_v128_xor(x, wasm_u32x4_shr(x, 16));
  x = wasm_i32x4_mul(x, wasm_i32x4_splat(0x7feb352d));
  x = wasm_v128_xor(x, wasm_u32x4_shr(x, 15));
  x = wasm_i32x4_mul(x, wasm_i32x4_splat((int)0x846ca68bu));
  return wasm_v128_xor(x, wasm_u32x4_shr(x, 16));
}

/*
 * out[i] = x[i]·scale where hash(i·φ + seed) ≥ threshold, else 0. The mask is a pure function
 * of (seed, i), so applying the same call to dy gives the gradient.
 */
EXPORT(dropout)
void dropout(const float* x, int n, unsigned seed, unsigned threshold, float scale, float* out) {
  const v128_t golden = wasm_i32x4_splat((int)0x9e3779b9u);
  const v128_t seeds = wasm_i32x4_splat((int)seed);
  const v128_t limit = wasm_i32x4_splat((int)threshold);
  const v128_t factor = wasm_f32x4_splat(scale);
  v128_t index = wasm_i32x4_make(0, 1, 2, 3);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const v128_t h = hash4(wasm_i32x4_add(wasm_i32x4_mul(index, golden), seeds));
    const v128_t keep = wasm_u32x4_ge(h, limit);
    wasm_v128_store(out + i, wasm_v128_and(wasm_f32x4_mul(wasm_v128_load(x + i), factor), keep));
    index = wasm_i32x4_add(index, wasm_i32x4_splat(4));
  }
  for (; i < n; i++) {
    const v128_t h = hash4(wasm_i32x4_splat((int)((unsigned)i * 0x9e3779b9u + seed)));
    out[i] = (unsigned)wasm_i32x4_extract_lane(h, 0) >= threshold ? x[i] * scale : 0.0f;
  }
}

/*
 * y = softmax(x) per row of n: m = max_j x_j, e_j = exp(x_j − m) (v_exp), y_j = e_j · (1 / Σ_j e_j).
 * The sum takes 16 partial sums, lane l summing the e_j with j ≡ l mod 16 in ascending order,
 * folded as ((s_l + s_{l+8}) + (s_{l+4} + s_{l+12})) for l < 4, then (f_0 + f_2) + (f_1 + f_3),
 * then the last n mod 16 elements in order: an order any vector width can follow (the native
 * build's 8 and 16 lanes give these bits).
 */
static inline float softmax_fold(v128_t a0, v128_t a1, v128_t a2, v128_t a3) {
  const v128_t f = wasm_f32x4_add(wasm_f32x4_add(a0, a2), wasm_f32x4_add(a1, a3));
  return (wasm_f32x4_extract_lane(f, 0) + wasm_f32x4_extract_lane(f, 2)) +
         (wasm_f32x4_extract_lane(f, 1) + wasm_f32x4_extract_lane(f, 3));
}

/* The row's maximum (the same value in any order, but for the sign of a zero, which no e_j sees). */
static inline float row_max(const float* x, int n) {
  int j = 0;
  float m = x[0];
  if (n >= 4) {
    v128_t mv = wasm_v128_load(x);
    for (j = 4; j + 4 <= n; j += 4) mv = wasm_f32x4_max(mv, wasm_v128_load(x + j));
    const float a = wasm_f32x4_extract_lane(mv, 0), b = wasm_f32x4_extract_lane(mv, 1);
    const float c = wasm_f32x4_extract_lane(mv, 2), d = wasm_f32x4_extract_lane(mv, 3);
    const float ab = a > b ? a : b, cd = c > d ? c : d;
    m = ab > cd ? ab : cd;
  }
  for (; j < n; j++) m = x[j] > m ? x[j] : m;
  return m;
}

/* e_j = exp(x_j − m) for the last n mod 16 elements, added to s in order. */
static inline float softmax_tail(const float* x, int j, int n, float m, float* y, float s) {
  for (; j < n; j++) {
    y[j] = wasm_f32x4_extract_lane(v_exp(wasm_f32x4_splat(x[j] - m)), 0);
    s += y[j];
  }
  return s;
}

EXPORT(softmax)
void softmax(const float* x, int rows, int n, float* y) {
  for (long r = 0; r < rows; r++) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    const float m = row_max(xr, n);
    const v128_t mv = wasm_f32x4_splat(m);
    v128_t a[4] = {wasm_f32x4_splat(0.0f), wasm_f32x4_splat(0.0f), wasm_f32x4_splat(0.0f), wasm_f32x4_splat(0.0f)};
    int j = 0;
    for (; j + 16 <= n; j += 16)
      for (int i = 0; i < 4; i++) {
        const v128_t e = v_exp(wasm_f32x4_sub(wasm_v128_load(xr + j + 4 * i), mv));
        wasm_v128_store(yr + j + 4 * i, e);
        a[i] = wasm_f32x4_add(a[i], e);
      }
    const float r = 1.0f / softmax_tail(xr, j, n, m, yr, softmax_fold(a[0], a[1], a[2], a[3]));
    const v128_t rv = wasm_f32x4_splat(r);
    j = 0;
    for (; j + 4 <= n; j += 4) wasm_v128_store(yr + j, wasm_f32x4_mul(wasm_v128_load(yr + j), rv));
    for (; j < n; j++) yr[j] = yr[j] * r;
  }
}

/* dx = y·(dy − Σ_j y·dy) per row of n: the gradient of a softmax over the last axis. */
EXPORT(softmax_grad)
void softmax_grad(const float* y, const float* dy, int rows, int n, float* dx) {
  for (long r = 0; r < rows; r++) {
    const float* yr = y + r * n;
    const float* dr = dy + r * n;
    float* xr = dx + r * n;
    v128_t acc = wasm_f32x4_splat(0.0f);
    int j = 0;
    for (; j + 4 <= n; j += 4) acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_v128_load(yr + j), wasm_v128_load(dr + j)));
    float dot = wasm_f32x4_extract_lane(acc, 0) + wasm_f32x4_extract_lane(acc, 1) + wasm_f32x4_extract_lane(acc, 2) +
                wasm_f32x4_extract_lane(acc, 3);
    for (; j < n; j++) dot += yr[j] * dr[j];
    const v128_t d = wasm_f32x4_splat(dot);
    j = 0;
    for (; j + 4 <= n; j += 4) {
      wasm_v128_store(xr + j, wasm_f32x4_mul(wasm_v128_load(yr + j), wasm_f32x4_sub(wasm_v128_load(dr + j), d)));
    }
    for (; j < n; j++) xr[j] = yr[j] * (dr[j] - dot);
  }
}

/* out[j] = Σ_i x[i][j] over the rows of [rows, n] (bias gradients). */
EXPORT(sum_rows)
void sum_rows(const float* x, int rows, int n, float* out) {
  int j = 0;
  for (; j + 16 <= n; j += 16) {
    v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
    for (long i = 0; i < rows; i++) {
      const float* r = x + i * n + j;
      a0 = wasm_f32x4_add(a0, wasm_v128_load(r));
      a1 = wasm_f32x4_add(a1, wasm_v128_load(r + 4));
      a2 = wasm_f32x4_add(a2, wasm_v128_load(r + 8));
      a3 = wasm_f32x4_add(a3, wasm_v128_load(r + 12));
    }
    wasm_v128_store(out + j, a0);
    wasm_v128_store(out + j + 4, a1);
    wasm_v128_store(out + j + 8, a2);
    wasm_v128_store(out + j + 12, a3);
  }
  for (; j < n; j++) {
    float s = 0.0f;
    for (long i = 0; i < rows; i++) s += x[i * n + j];
    out[j] = s;
  }
}

/* ---- Winograd F(2×2, 3×3) convolution, stride 1, 'SAME' padding --------------------------- */
/*
 * A 3×3 stride-1 convolution computed on 2×2 output tiles: y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A for each
 * 4×4 input patch d (Lavin & Gray 2016). The element-wise product summed over input channels is
 * 16 matrix products [tiles, Cin]·[Cin, Cout], one per position ξ = 4r + s of the transformed
 * tile.
 *
 * Tiles: th = ⌈H/2⌉, tw = ⌈W/2⌉, tile t = (n·th + ty)·tw + tx covers output rows 2ty, 2ty+1 and
 * input rows 2ty−1 … 2ty+2 (zero outside the image), likewise for columns. The kernels work on
 * blocks of WINO_BLOCK tiles: transform the block into scratch ([16][tiles][C]: 4× the block's
 * pixels), multiply, transform back, so the transformed tensors stay in the cache instead of
 * being written out whole (4× the activations, which separate passes stream through memory). C is a
 * multiple of 4.
 */
#define WINO_BLOCK 64

/* Where tile t lies: its image n and its output origin (2ty, 2tx). */
typedef struct {
  long n;
  int i0, j0;
} tile_pos;

static inline __attribute__((always_inline)) tile_pos tile_at(long t, int h, int w) {
  const int th = (h + 1) / 2, tw = (w + 1) / 2;
  return (tile_pos){t / ((long)th * tw), 2 * (int)(t / tw % th), 2 * (int)(t % tw)};
}

/* Row i of a tile's input patch, four channels: zero outside the image. */
static inline v128_t patch_at(const float* xn, int h, int w, int c, int i, int j, int k) {
  if (i < 0 || i >= h || j < 0 || j >= w) return wasm_f32x4_splat(0.0f);
  return wasm_v128_load(xn + ((long)i * w + j) * c + k);
}

/* Bᵀ d B for tiles t0 … t0 + nt − 1 of x [B, H, W, C] into v [16][nt][C]. */
static void input_block(const float* x, int h, int w, int c, long t0, int nt, float* v) {
  const long stride = (long)nt * c; /* from ξ to ξ + 1 */
  for (int q = 0; q < nt; q++) {
    const tile_pos tp = tile_at(t0 + q, h, w);
    const long n = tp.n;
    const float* xn = x + n * h * w * c;
    const int i0 = tp.i0 - 1, j0 = tp.j0 - 1;
    for (int k = 0; k < c; k += 4) {
      float* vq = v + (long)q * c + k;
      v128_t u[4][4];
      for (int r = 0; r < 4; r++) {
        const v128_t d0 = patch_at(xn, h, w, c, i0 + r, j0 + 0, k);
        const v128_t d1 = patch_at(xn, h, w, c, i0 + r, j0 + 1, k);
        const v128_t d2 = patch_at(xn, h, w, c, i0 + r, j0 + 2, k);
        const v128_t d3 = patch_at(xn, h, w, c, i0 + r, j0 + 3, k);
        u[r][0] = wasm_f32x4_sub(d0, d2);
        u[r][1] = wasm_f32x4_add(d1, d2);
        u[r][2] = wasm_f32x4_sub(d2, d1);
        u[r][3] = wasm_f32x4_sub(d1, d3);
      }
      for (int s = 0; s < 4; s++) {
        wasm_v128_store(vq + (0 * 4 + s) * stride, wasm_f32x4_sub(u[0][s], u[2][s]));
        wasm_v128_store(vq + (1 * 4 + s) * stride, wasm_f32x4_add(u[1][s], u[2][s]));
        wasm_v128_store(vq + (2 * 4 + s) * stride, wasm_f32x4_sub(u[2][s], u[1][s]));
        wasm_v128_store(vq + (3 * 4 + s) * stride, wasm_f32x4_sub(u[1][s], u[3][s]));
      }
    }
  }
}

/*
 * What a convolution adds to its products: a bias per channel, per image and channel ([B][C]) and
 * a residual tensor of the output's shape, each of which may be 0, added in that order.
 */
typedef struct {
  const float *bias, *image_bias, *residual;
} conv_addends;

/* y = Aᵀ m A (+ the addends) for tiles t0 … t0 + nt − 1, m [16][nt][C], into y [B, H, W, C]. */
static void output_block(const float* m, const conv_addends* add, int h, int w, int c, long t0, int nt, float* y) {
  const long stride = (long)nt * c;
  for (int q = 0; q < nt; q++) {
    const tile_pos tp = tile_at(t0 + q, h, w);
    const long n = tp.n;
    const int i0 = tp.i0, j0 = tp.j0;
    for (int k = 0; k < c; k += 4) {
      const float* mq = m + (long)q * c + k;
      v128_t u[2][4];
      for (int s = 0; s < 4; s++) {
        const v128_t m0 = wasm_v128_load(mq + (0 * 4 + s) * stride);
        const v128_t m1 = wasm_v128_load(mq + (1 * 4 + s) * stride);
        const v128_t m2 = wasm_v128_load(mq + (2 * 4 + s) * stride);
        const v128_t m3 = wasm_v128_load(mq + (3 * 4 + s) * stride);
        u[0][s] = wasm_f32x4_add(wasm_f32x4_add(m0, m1), m2);
        u[1][s] = wasm_f32x4_sub(wasm_f32x4_sub(m1, m2), m3);
      }
      const v128_t bias = add->bias ? wasm_v128_load(add->bias + k) : wasm_f32x4_splat(0.0f);
      const float* image_bias = add->image_bias ? add->image_bias + n * c + k : 0;
      for (int r = 0; r < 2; r++) {
        if (i0 + r >= h) break;
        const long at = (n * h * w + (long)(i0 + r) * w + j0) * c + k;
        v128_t v[2] = {wasm_f32x4_add(wasm_f32x4_add(u[r][0], u[r][1]), u[r][2]),
                       wasm_f32x4_sub(wasm_f32x4_sub(u[r][1], u[r][2]), u[r][3])};
        for (int s = 0; s < 2 && j0 + s < w; s++) {
          v[s] = wasm_f32x4_add(v[s], bias);
          if (image_bias) v[s] = wasm_f32x4_add(v[s], wasm_v128_load(image_bias));
          if (add->residual) v[s] = wasm_f32x4_add(v[s], wasm_v128_load(add->residual + at + s * c));
          wasm_v128_store(y + at + s * c, v[s]);
        }
      }
    }
  }
}

/*
 * The adjoint of the output transform: dm = A g Aᵀ for the 2×2 tiles of dy [B, H, W, C] (zero
 * outside), tiles t0 … t0 + nt − 1, into dm [16][nt][C]: the gradient at the products.
 */
static void output_grad_block(const float* dy, int h, int w, int c, long t0, int nt, float* dm) {
  const long stride = (long)nt * c;
  const v128_t zero = wasm_f32x4_splat(0.0f);
  for (int q = 0; q < nt; q++) {
    const tile_pos tp = tile_at(t0 + q, h, w);
    const long n = tp.n;
    const int i0 = tp.i0, j0 = tp.j0;
    const int down = i0 + 1 < h, right = j0 + 1 < w;
    for (int k = 0; k < c; k += 4) {
      const float* p = dy + ((n * h + i0) * (long)w + j0) * c + k;
      const v128_t g00 = wasm_v128_load(p);
      const v128_t g01 = right ? wasm_v128_load(p + c) : zero;
      const v128_t g10 = down ? wasm_v128_load(p + (long)w * c) : zero;
      const v128_t g11 = down && right ? wasm_v128_load(p + (long)w * c + c) : zero;
      /* Rows of A·g: [g0, g0 + g1, g0 − g1, −g1], then the same along columns. */
      v128_t a[4][2];
      a[0][0] = g00;
      a[0][1] = g01;
      a[1][0] = wasm_f32x4_add(g00, g10);
      a[1][1] = wasm_f32x4_add(g01, g11);
      a[2][0] = wasm_f32x4_sub(g00, g10);
      a[2][1] = wasm_f32x4_sub(g01, g11);
      a[3][0] = wasm_f32x4_neg(g10);
      a[3][1] = wasm_f32x4_neg(g11);
      float* out = dm + (long)q * c + k;
      for (int r = 0; r < 4; r++) {
        wasm_v128_store(out + (r * 4 + 0) * stride, a[r][0]);
        wasm_v128_store(out + (r * 4 + 1) * stride, wasm_f32x4_add(a[r][0], a[r][1]));
        wasm_v128_store(out + (r * 4 + 2) * stride, wasm_f32x4_sub(a[r][0], a[r][1]));
        wasm_v128_store(out + (r * 4 + 3) * stride, wasm_f32x4_neg(a[r][1]));
      }
    }
  }
}

/*
 * out = a·b for a [rows][K] and b [K][N] (N a multiple of 4): 4×8 blocks of the output
 * accumulate in registers over K, the sum over K in ascending order.
 */
static void gemm_nn(const float* a, const float* b, int rows, int kk, int n, float* out) {
  int i = 0;
  for (; i + 4 <= rows; i += 4) {
    const float* a0r = a + (long)i * kk;
    int j = 0;
    for (; j + 8 <= n; j += 8) {
      v128_t c00 = wasm_f32x4_splat(0.0f), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
      for (int p = 0; p < kk; p++) {
        const v128_t b0 = wasm_v128_load(b + (long)p * n + j);
        const v128_t b1 = wasm_v128_load(b + (long)p * n + j + 4);
        const v128_t a0 = wasm_v128_load32_splat(a0r + p);
        const v128_t a1 = wasm_v128_load32_splat(a0r + kk + p);
        const v128_t a2 = wasm_v128_load32_splat(a0r + 2 * kk + p);
        const v128_t a3 = wasm_v128_load32_splat(a0r + 3 * kk + p);
        c00 = MADD(a0, b0, c00);
        c01 = MADD(a0, b1, c01);
        c10 = MADD(a1, b0, c10);
        c11 = MADD(a1, b1, c11);
        c20 = MADD(a2, b0, c20);
        c21 = MADD(a2, b1, c21);
        c30 = MADD(a3, b0, c30);
        c31 = MADD(a3, b1, c31);
      }
      float* o = out + (long)i * n + j;
      wasm_v128_store(o, c00);
      wasm_v128_store(o + 4, c01);
      wasm_v128_store(o + n, c10);
      wasm_v128_store(o + n + 4, c11);
      wasm_v128_store(o + 2 * n, c20);
      wasm_v128_store(o + 2 * n + 4, c21);
      wasm_v128_store(o + 3 * n, c30);
      wasm_v128_store(o + 3 * n + 4, c31);
    }
    for (; j < n; j += 4) {
      v128_t c0 = wasm_f32x4_splat(0.0f), c1 = c0, c2 = c0, c3 = c0;
      for (int p = 0; p < kk; p++) {
        const v128_t b0 = wasm_v128_load(b + (long)p * n + j);
        c0 = MADD(wasm_v128_load32_splat(a0r + p), b0, c0);
        c1 = MADD(wasm_v128_load32_splat(a0r + kk + p), b0, c1);
        c2 = MADD(wasm_v128_load32_splat(a0r + 2 * kk + p), b0, c2);
        c3 = MADD(wasm_v128_load32_splat(a0r + 3 * kk + p), b0, c3);
      }
      float* o = out + (long)i * n + j;
      wasm_v128_store(o, c0);
      wasm_v128_store(o + n, c1);
      wasm_v128_store(o + 2 * n, c2);
      wasm_v128_store(o + 3 * n, c3);
    }
  }
  for (; i < rows; i++) {
    const float* ar = a + (long)i * kk;
    for (int j = 0; j < n; j += 4) {
      v128_t c0 = wasm_f32x4_splat(0.0f);
      for (int p = 0; p < kk; p++) c0 = MADD(wasm_v128_load32_splat(ar + p), wasm_v128_load(b + (long)p * n + j), c0);
      wasm_v128_store(out + (long)i * n + j, c0);
    }
  }
}

/*
 * y = conv2d(x, g, 1, 'SAME') + bias + image_bias[n] + residual (each may be 0) for x [B, H, W, Cin],
 * the filter given by its transform u [16][Cin][Cout] (winograd_filter or winograd_rotate);
 * y [B, H, W, Cout]. scratch: 16·WINO_BLOCK·(Cin + Cout) floats.
 */
EXPORT(winograd_conv)
void winograd_conv(const float* x, const float* u, const float* bias, const float* image_bias, const float* residual,
                   int b, int h, int w, int cin, int cout, float* y, float* scratch) {
  const conv_addends add = {bias, image_bias, residual};
  const long tiles = (long)b * ((h + 1) / 2) * ((w + 1) / 2);
  float* v = scratch;
  float* m = scratch + 16 * WINO_BLOCK * cin;
  for (long t0 = 0; t0 < tiles; t0 += WINO_BLOCK) {
    const int nt = (int)(tiles - t0 < WINO_BLOCK ? tiles - t0 : WINO_BLOCK);
    input_block(x, h, w, cin, t0, nt, v);
    for (int xi = 0; xi < 16; xi++) {
      gemm_nn(v + (long)xi * nt * cin, u + (long)xi * cin * cout, nt, cin, cout, m + (long)xi * nt * cout);
    }
    output_block(m, &add, h, w, cout, t0, nt, y);
  }
}

/*
 * out[i][j] += Σ_t a[t][i]·b[t][j] for a [rows][M], b [rows][N] (M, N multiples of 4): 4×8 blocks
 * of the output accumulate in registers over the rows, in ascending order.
 */
static void gemm_tn_acc(const float* a, const float* b, int rows, int m, int n, float* o) {
  for (int i = 0; i < m; i += 4) {
    int j = 0;
    for (; j + 8 <= n; j += 8) {
      float* oi = o + (long)i * n + j;
      v128_t c00 = wasm_v128_load(oi), c01 = wasm_v128_load(oi + 4);
      v128_t c10 = wasm_v128_load(oi + n), c11 = wasm_v128_load(oi + n + 4);
      v128_t c20 = wasm_v128_load(oi + 2 * n), c21 = wasm_v128_load(oi + 2 * n + 4);
      v128_t c30 = wasm_v128_load(oi + 3 * n), c31 = wasm_v128_load(oi + 3 * n + 4);
      for (int p = 0; p < rows; p++) {
        const v128_t av = wasm_v128_load(a + (long)p * m + i);
        const v128_t b0 = wasm_v128_load(b + (long)p * n + j);
        const v128_t b1 = wasm_v128_load(b + (long)p * n + j + 4);
        const v128_t a0 = wasm_i32x4_shuffle(av, av, 0, 0, 0, 0);
        const v128_t a1 = wasm_i32x4_shuffle(av, av, 1, 1, 1, 1);
        const v128_t a2 = wasm_i32x4_shuffle(av, av, 2, 2, 2, 2);
        const v128_t a3 = wasm_i32x4_shuffle(av, av, 3, 3, 3, 3);
        c00 = MADD(a0, b0, c00);
        c01 = MADD(a0, b1, c01);
        c10 = MADD(a1, b0, c10);
        c11 = MADD(a1, b1, c11);
        c20 = MADD(a2, b0, c20);
        c21 = MADD(a2, b1, c21);
        c30 = MADD(a3, b0, c30);
        c31 = MADD(a3, b1, c31);
      }
      wasm_v128_store(oi, c00);
      wasm_v128_store(oi + 4, c01);
      wasm_v128_store(oi + n, c10);
      wasm_v128_store(oi + n + 4, c11);
      wasm_v128_store(oi + 2 * n, c20);
      wasm_v128_store(oi + 2 * n + 4, c21);
      wasm_v128_store(oi + 3 * n, c30);
      wasm_v128_store(oi + 3 * n + 4, c31);
    }
    for (; j < n; j += 4) {
      float* oi = o + (long)i * n + j;
      v128_t c0 = wasm_v128_load(oi), c1 = wasm_v128_load(oi + n);
      v128_t c2 = wasm_v128_load(oi + 2 * n), c3 = wasm_v128_load(oi + 3 * n);
      for (int p = 0; p < rows; p++) {
        const v128_t av = wasm_v128_load(a + (long)p * m + i);
        const v128_t b0 = wasm_v128_load(b + (long)p * n + j);
        c0 = MADD(wasm_i32x4_shuffle(av, av, 0, 0, 0, 0), b0, c0);
        c1 = MADD(wasm_i32x4_shuffle(av, av, 1, 1, 1, 1), b0, c1);
        c2 = MADD(wasm_i32x4_shuffle(av, av, 2, 2, 2, 2), b0, c2);
        c3 = MADD(wasm_i32x4_shuffle(av, av, 3, 3, 3, 3), b0, c3);
      }
      wasm_v128_store(oi, c0);
      wasm_v128_store(oi + n, c1);
      wasm_v128_store(oi + 2 * n, c2);
      wasm_v128_store(oi + 3 * n, c3);
    }
  }
}

static void zero_floats(float* p, long n) {
  for (long i = 0; i < n; i += 4) wasm_v128_store(p + i, wasm_f32x4_splat(0.0f));
}

/*
 * The filter gradient's transform dU[ξ] = Σ_tiles V[ξ]ᵀ·(A dy Aᵀ)[ξ] for x [B, H, W, Cin] and the
 * output gradient dy [B, H, W, Cout]: du [16][Cin][Cout] (then winograd_filter_grad). Block by
 * block, the sum over tiles in ascending order. scratch: 16·WINO_BLOCK·(Cin + Cout) floats.
 */
EXPORT(winograd_filter_products)
void winograd_filter_products(const float* x, const float* dy, int b, int h, int w, int cin, int cout, float* du,
                              float* scratch) {
  const long tiles = (long)b * ((h + 1) / 2) * ((w + 1) / 2);
  float* v = scratch;
  float* dm = scratch + 16 * WINO_BLOCK * cin;
  zero_floats(du, 16L * cin * cout);
  for (long t0 = 0; t0 < tiles; t0 += WINO_BLOCK) {
    const int nt = (int)(tiles - t0 < WINO_BLOCK ? tiles - t0 : WINO_BLOCK);
    input_block(x, h, w, cin, t0, nt, v);
    output_grad_block(dy, h, w, cout, t0, nt, dm);
    for (int xi = 0; xi < 16; xi++) {
      gemm_tn_acc(v + (long)xi * nt * cin, dm + (long)xi * nt * cout, nt, cin, cout, du + (long)xi * cin * cout);
    }
  }
}

/*
 * The transform of the filter rotated by 180° with in/out swapped (the input gradient's filter),
 * from the filter's own transform: G with its columns reversed is G with rows 0 and 3 swapped, so
 * out[(a, b)][o][c] = u[(p(a), p(b))][c][o] with p = (3, 1, 2, 0).
 */
EXPORT(winograd_rotate)
void winograd_rotate(const float* u, int cin, int cout, float* out) {
  for (int a = 0; a < 4; a++) {
    for (int bb = 0; bb < 4; bb++) {
      const int pa = a == 0 ? 3 : a == 3 ? 0 : a;
      const int pb = bb == 0 ? 3 : bb == 3 ? 0 : bb;
      const float* src = u + (long)(pa * 4 + pb) * cin * cout;
      float* dst = out + (long)(a * 4 + bb) * cin * cout;
      for (int c = 0; c < cin; c++) {
        for (int o = 0; o < cout; o++) dst[(long)o * cin + c] = src[(long)c * cout + o];
      }
    }
  }
}

/*
 * The filter transform U = G g Gᵀ for n channel pairs (n a multiple of 4): g [3][3][n] (the
 * filter [3, 3, Cin, Cout] flattened) → u [16][n], with G = [[1, 0, 0], [½, ½, ½], [½, −½, ½],
 * [0, 0, 1]].
 */
EXPORT(winograd_filter)
void winograd_filter(const float* g, int n, float* u) {
  const v128_t half = wasm_f32x4_splat(0.5f);
  for (long i = 0; i < n; i += 4) {
    v128_t t[4][3];
    for (int s = 0; s < 3; s++) {
      const v128_t g0 = wasm_v128_load(g + (0 * 3 + s) * (long)n + i);
      const v128_t g1 = wasm_v128_load(g + (1 * 3 + s) * (long)n + i);
      const v128_t g2 = wasm_v128_load(g + (2 * 3 + s) * (long)n + i);
      const v128_t even = wasm_f32x4_add(g0, g2);
      t[0][s] = g0;
      t[1][s] = wasm_f32x4_mul(wasm_f32x4_add(even, g1), half);
      t[2][s] = wasm_f32x4_mul(wasm_f32x4_sub(even, g1), half);
      t[3][s] = g2;
    }
    for (int a = 0; a < 4; a++) {
      const v128_t even = wasm_f32x4_add(t[a][0], t[a][2]);
      wasm_v128_store(u + (a * 4 + 0) * (long)n + i, t[a][0]);
      wasm_v128_store(u + (a * 4 + 1) * (long)n + i, wasm_f32x4_mul(wasm_f32x4_add(even, t[a][1]), half));
      wasm_v128_store(u + (a * 4 + 2) * (long)n + i, wasm_f32x4_mul(wasm_f32x4_sub(even, t[a][1]), half));
      wasm_v128_store(u + (a * 4 + 3) * (long)n + i, t[a][2]);
    }
  }
}

/* The filter transform's adjoint: dg = Gᵀ du G, du [16][n] → dg [3][3][n]. */
EXPORT(winograd_filter_grad)
void winograd_filter_grad(const float* du, int n, float* dg) {
  const v128_t half = wasm_f32x4_splat(0.5f);
  for (long i = 0; i < n; i += 4) {
    v128_t t[3][4];
    for (int b = 0; b < 4; b++) {
      const v128_t d0 = wasm_v128_load(du + (0 * 4 + b) * (long)n + i);
      const v128_t d1 = wasm_v128_load(du + (1 * 4 + b) * (long)n + i);
      const v128_t d2 = wasm_v128_load(du + (2 * 4 + b) * (long)n + i);
      const v128_t d3 = wasm_v128_load(du + (3 * 4 + b) * (long)n + i);
      const v128_t sum = wasm_f32x4_mul(wasm_f32x4_add(d1, d2), half);
      t[0][b] = wasm_f32x4_add(d0, sum);
      t[1][b] = wasm_f32x4_mul(wasm_f32x4_sub(d1, d2), half);
      t[2][b] = wasm_f32x4_add(sum, d3);
    }
    for (int r = 0; r < 3; r++) {
      const v128_t sum = wasm_f32x4_mul(wasm_f32x4_add(t[r][1], t[r][2]), half);
      wasm_v128_store(dg + (r * 3 + 0) * (long)n + i, wasm_f32x4_add(t[r][0], sum));
      wasm_v128_store(dg + (r * 3 + 1) * (long)n + i, wasm_f32x4_mul(wasm_f32x4_sub(t[r][1], t[r][2]), half));
      wasm_v128_store(dg + (r * 3 + 2) * (long)n + i, wasm_f32x4_add(sum, t[r][3]));
    }
  }
}

/* ---- products with a long reduction into a small output ------------------------------- */
/*
 * out[z][i][j] = Σ_t a[z][t][i]·b[z][t][j] for z < batch: out[z] = a[z]ᵀ·b[z] with a [batch][T][M]
 * and b [batch][T][N] (M, N multiples of 4). The gradients' "aᵀ·dy" products: a filter
 * gradient's dU[ξ] = V[ξ]ᵀ·dM[ξ] (Winograd), a dense layer's xᵀ·dy, a batched product's aᵀ·dy.
 * XNNPACK would need a transposed copy of a and would pack b anew at every call (both fresh
 * tensors); here 4×8 blocks of the output accumulate in registers over chunks of 128 rows, whose
 * rows of a and b stay in the L1 cache while every block of the output passes over them. The sum
 * over t runs in ascending order, whatever the batch.
 */
#define TN_CHUNK 128
EXPORT(matmul_tn)
void matmul_tn(const float* a, const float* b, int batch, int t, int m, int n, float* out) {
  for (int z = 0; z < batch; z++) {
    const float* az = a + (long)z * t * m;
    const float* bz = b + (long)z * t * n;
    float* o = out + (long)z * m * n;
    zero_floats(o, (long)m * n);
    for (int p0 = 0; p0 < t; p0 += TN_CHUNK) {
      const int rows = p0 + TN_CHUNK < t ? TN_CHUNK : t - p0;
      gemm_tn_acc(az + (long)p0 * m, bz + (long)p0 * n, rows, m, n, o);
    }
  }
}

/* out[i][j] += bias[j], then += residual[i][j], for rows × n (n a multiple of 4); either may be 0. */
static void add_to_rows(float* out, const float* bias, const float* residual, long rows, int n) {
  if (!bias && !residual) return;
  for (long i = 0; i < rows; i++)
    for (int j = 0; j < n; j += 4) {
      const long at = i * n + j;
      v128_t v = wasm_v128_load(out + at);
      if (bias) v = wasm_f32x4_add(v, wasm_v128_load(bias + j));
      if (residual) v = wasm_f32x4_add(v, wasm_v128_load(residual + at));
      wasm_v128_store(out + at, v);
    }
}

/*
 * out[z] = a[z]·b[z] (+ bias per column) (+ residual) for z < batch, a [batch][M][K], b
 * [batch][K][N] (N a multiple of 4), bias [N] and residual [batch][M][N] each may be 0: the
 * batched products of attention and the dense layers, without XNNPACK's packing of b at every
 * call (b is a fresh tensor each time). The sum over K runs in ascending order, then the bias and
 * the residual are added.
 */
EXPORT(matmul_nn)
void matmul_nn(const float* a, const float* b, const float* bias, const float* residual, int batch, int m, int k, int n,
               float* out) {
  for (int z = 0; z < batch; z++) {
    gemm_nn(a + (long)z * m * k, b + (long)z * k * n, m, k, n, out + (long)z * m * n);
    add_to_rows(out + (long)z * m * n, bias, residual ? residual + (long)z * m * n : 0, m, n);
  }
}

/* ---- direct convolution: patches and one product --------------------------------------- */
/*
 * The convolutions Winograd does not take (stride 2, the image's three channels): each block of
 * CONV_BLOCK output pixels gathers its k×k patches into scratch [pixels][k·k·Cin] (zeros outside
 * the image) and multiplies them by the filter [k·k·Cin][Cout] (its own layout [k][k][Cin][Cout])
 * in one product, the sum over (row, column, channel) of the patch in ascending order, then the
 * bias is added.
 */
#define CONV_BLOCK 64

typedef struct {
  int b, h, w, cin, k, stride, pad_top, pad_left, ho, wo, cout;
} conv_shape;

/*
 * The patches of output pixels p0 … p0 + np − 1 (over the batch) into patches [np][row], row ≥
 * k·k·Cin (the columns past k·k·Cin are zeroed).
 */
static inline __attribute__((always_inline)) void gather_patches(const float* x, const conv_shape* s, long p0,
                                                                  int np, float* patches, int row) {
  for (int q = 0; q < np; q++) {
    const long p = p0 + q;
    const long n = p / ((long)s->ho * s->wo);
    const int oy = (int)(p / s->wo % s->ho), ox = (int)(p % s->wo);
    float* dst = patches + (long)q * row;
    for (int dy = 0; dy < s->k; dy++) {
      const int iy = oy * s->stride - s->pad_top + dy;
      for (int dx = 0; dx < s->k; dx++, dst += s->cin) {
        const int ix = ox * s->stride - s->pad_left + dx;
        if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) {
          for (int c = 0; c < s->cin; c++) dst[c] = 0.0f;
        } else {
          const float* src = x + ((n * s->h + iy) * (long)s->w + ix) * s->cin;
          for (int c = 0; c < s->cin; c++) dst[c] = src[c];
        }
      }
    }
    for (int c = s->k * s->k * s->cin; c < row; c++) patches[(long)q * row + c] = 0.0f;
  }
}

/* k·k·Cin rounded up to a multiple of 4: the row of the gradients' patches. */
static inline int patch_row4(const conv_shape* s) { return (s->k * s->k * s->cin + 3) & ~3; }

/*
 * y = conv2d(x, g, stride, padding) + bias (bias may be 0) for x [B, H, W, Cin], g [k][k][Cin][Cout]
 * (Cout a multiple of 4), y [B, Ho, Wo, Cout]; pad_top and pad_left are the padding before the
 * image ('SAME' or any other). scratch: CONV_BLOCK·k·k·Cin floats.
 */
EXPORT(direct_conv)
void direct_conv(const float* x, const float* g, const float* bias, int b, int h, int w, int cin, int k, int stride,
                 int pad_top, int pad_left, int ho, int wo, int cout, float* y, float* scratch) {
  const conv_shape s = {b, h, w, cin, k, stride, pad_top, pad_left, ho, wo, cout};
  const long pixels = (long)b * ho * wo;
  for (long p0 = 0; p0 < pixels; p0 += CONV_BLOCK) {
    const int np = (int)(pixels - p0 < CONV_BLOCK ? pixels - p0 : CONV_BLOCK);
    gather_patches(x, &s, p0, np, scratch, k * k * cin);
    gemm_nn(scratch, g, np, k * k * cin, cout, y + p0 * cout);
    add_to_rows(y + p0 * cout, bias, 0, np, cout);
  }
}

/*
 * direct_conv's filter gradient: dg [k][k][Cin][Cout] = Σ over output pixels (ascending) of the
 * pixel's patch ⊗ dy[pixel], for dy [B, Ho, Wo, Cout] (Cout a multiple of 4). The patches' row is
 * padded to a multiple of 4 (R = patch_row4); scratch: CONV_BLOCK·R + R·Cout floats.
 */
EXPORT(direct_conv_filter_grad)
void direct_conv_filter_grad(const float* x, const float* dy, int b, int h, int w, int cin, int k, int stride,
                             int pad_top, int pad_left, int ho, int wo, int cout, float* dg, float* scratch) {
  const conv_shape s = {b, h, w, cin, k, stride, pad_top, pad_left, ho, wo, cout};
  const int row = patch_row4(&s);
  float* sums = scratch + (long)CONV_BLOCK * row;
  zero_floats(sums, (long)row * cout);
  const long pixels = (long)b * ho * wo;
  for (long p0 = 0; p0 < pixels; p0 += CONV_BLOCK) {
    const int np = (int)(pixels - p0 < CONV_BLOCK ? pixels - p0 : CONV_BLOCK);
    gather_patches(x, &s, p0, np, scratch, row);
    gemm_tn_acc(scratch, dy + p0 * cout, np, row, cout, sums);
  }
  for (long i = 0; i < (long)k * k * cin * cout; i++) dg[i] = sums[i];
}

/* Each row of dpatches ([pixels][row]) added back into dx where gather_patches took its patch. */
static inline __attribute__((always_inline)) void scatter_patches(const float* dpatches, const conv_shape* s, long p0,
                                                                   int np, int row, float* dx) {
  for (int q = 0; q < np; q++) {
    const long p = p0 + q;
    const long n = p / ((long)s->ho * s->wo);
    const int oy = (int)(p / s->wo % s->ho), ox = (int)(p % s->wo);
    const float* src = dpatches + (long)q * row;
    for (int dy = 0; dy < s->k; dy++) {
      const int iy = oy * s->stride - s->pad_top + dy;
      for (int dx2 = 0; dx2 < s->k; dx2++, src += s->cin) {
        const int ix = ox * s->stride - s->pad_left + dx2;
        if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) continue;
        float* dst = dx + ((n * s->h + iy) * (long)s->w + ix) * s->cin;
        for (int c = 0; c < s->cin; c++) dst[c] += src[c];
      }
    }
  }
}

/* gᵀ with its rows padded: gt [Cout][R] from g [k·k·Cin][Cout] (the columns past k·k·Cin zero). */
static void transpose_filter(const float* g, int kk, int cout, int row, float* gt) {
  for (int co = 0; co < cout; co++)
    for (int p = 0; p < row; p++) gt[(long)co * row + p] = p < kk ? g[(long)p * cout + co] : 0.0f;
}

/*
 * direct_conv's input gradient: dx [B, H, W, Cin] = Σ over output pixels (ascending) of
 * dy[pixel]·gᵀ added back over the pixel's patch. scratch: CONV_BLOCK·R + Cout·R floats.
 */
EXPORT(direct_conv_input_grad)
void direct_conv_input_grad(const float* dy, const float* g, int b, int h, int w, int cin, int k, int stride,
                            int pad_top, int pad_left, int ho, int wo, int cout, float* dx, float* scratch) {
  const conv_shape s = {b, h, w, cin, k, stride, pad_top, pad_left, ho, wo, cout};
  const int row = patch_row4(&s);
  float* gt = scratch + (long)CONV_BLOCK * row;
  transpose_filter(g, k * k * cin, cout, row, gt);
  for (long i = 0; i < (long)b * h * w * cin; i++) dx[i] = 0.0f;
  const long pixels = (long)b * ho * wo;
  for (long p0 = 0; p0 < pixels; p0 += CONV_BLOCK) {
    const int np = (int)(pixels - p0 < CONV_BLOCK ? pixels - p0 : CONV_BLOCK);
    gemm_nn(dy + p0 * cout, gt, np, cout, row, scratch);
    scatter_patches(scratch, &s, p0, np, row, dx);
  }
}

/* ---- the optimizer step ------------------------------------------------------------------- */
/*
 * One Adam step and the EMA after it, for n values (a multiple of 4 is not needed), in one pass
 * instead of the ~12 tfjs kernels (and their temporaries) per variable. The same float32
 * operations in the same order as the composed tfjs ops (engine/adam.ts, ema.ts), so the results
 * are the same bits:
 *   g' = g·scale (when clip), m' = m·β1 + g'·(1 − β1), v' = v·β2 + g'²·(1 − β2),
 *   p' = p − (m' / (√v' + ε))·lr_t, ema' = ema·d + p'·(1 − d).
 * The constants come as float32, as tfjs turns a number operand into a float32 scalar.
 */
static inline v128_t adam_lane(v128_t p, v128_t g, v128_t m, v128_t v, v128_t* m_out, v128_t* v_out, const v128_t* k,
                               int clip) {
  if (clip) g = wasm_f32x4_mul(g, k[0]);
  const v128_t m1 = wasm_f32x4_add(wasm_f32x4_mul(m, k[1]), wasm_f32x4_mul(g, k[2]));
  const v128_t v1 = wasm_f32x4_add(wasm_f32x4_mul(v, k[3]), wasm_f32x4_mul(wasm_f32x4_mul(g, g), k[4]));
  *m_out = m1;
  *v_out = v1;
  return wasm_f32x4_sub(p, wasm_f32x4_mul(wasm_f32x4_div(m1, wasm_f32x4_add(wasm_f32x4_sqrt(v1), k[5])), k[6]));
}

EXPORT(adam_ema_step)
void adam_ema_step(const float* p, const float* g, const float* m, const float* v, const float* ema, int n, int clip,
                   float scale, float beta1, float one_minus_beta1, float beta2, float one_minus_beta2, float eps,
                   float lr_t, float decay, float one_minus_decay, float* p_out, float* m_out, float* v_out,
                   float* ema_out) {
  v128_t k[9];
  k[0] = wasm_f32x4_splat(scale);
  k[1] = wasm_f32x4_splat(beta1);
  k[2] = wasm_f32x4_splat(one_minus_beta1);
  k[3] = wasm_f32x4_splat(beta2);
  k[4] = wasm_f32x4_splat(one_minus_beta2);
  k[5] = wasm_f32x4_splat(eps);
  k[6] = wasm_f32x4_splat(lr_t);
  k[7] = wasm_f32x4_splat(decay);
  k[8] = wasm_f32x4_splat(one_minus_decay);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    v128_t m1, v1;
    const v128_t p1 = adam_lane(wasm_v128_load(p + i), wasm_v128_load(g + i), wasm_v128_load(m + i), wasm_v128_load(v + i), &m1,
                                &v1, k, clip);
    wasm_v128_store(m_out + i, m1);
    wasm_v128_store(v_out + i, v1);
    wasm_v128_store(p_out + i, p1);
    wasm_v128_store(ema_out + i, wasm_f32x4_add(wasm_f32x4_mul(wasm_v128_load(ema + i), k[7]), wasm_f32x4_mul(p1, k[8])));
  }
  for (; i < n; i++) {
    v128_t m1, v1;
    const v128_t p1 = adam_lane(wasm_f32x4_splat(p[i]), wasm_f32x4_splat(g[i]), wasm_f32x4_splat(m[i]), wasm_f32x4_splat(v[i]),
                                &m1, &v1, k, clip);
    m_out[i] = wasm_f32x4_extract_lane(m1, 0);
    v_out[i] = wasm_f32x4_extract_lane(v1, 0);
    p_out[i] = wasm_f32x4_extract_lane(p1, 0);
    ema_out[i] = ema[i] * decay + wasm_f32x4_extract_lane(p1, 0) * one_minus_decay;
  }
}
