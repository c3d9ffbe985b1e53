/*
 * SIMD kernels for the wasm backend, compiled by clang to a module that imports the tfjs-wasm
 * heap's memory (see ../src/ops/wasm-kernels.ts and build.sh). Rules that keep it safe inside
 * another module's memory: no static data, no stack (no local arrays, no calls that spill), no
 * allocation; every buffer is a pointer the caller allocated from the tfjs heap.
 *
 * Layout NHWC: x[b][p][c] with p over H·W. C is a multiple of 4 and G divides C.
 */
#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(#name)))

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
 * GroupNorm (+ swish) forward. Writes out (= y or swish(y)), sig (= σ(y), only when swish),
 * mean and rstd per image and channel ([B][C], repeated per group) and uses scratch[2C].
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
    float* sn = swish ? sig + (long)n * hw * c : 0;
    for (int p = 0; p < hw; p++) {
      const long base = (long)p * c;
      for (int k = 0; k < c; k += 4) {
        const v128_t y = wasm_f32x4_add(wasm_f32x4_mul(wasm_v128_load(xn + base + k), wasm_v128_load(scale + k)),
                                        wasm_v128_load(shift + k));
        if (swish) {
          const v128_t s = v_sigmoid(y);
          wasm_v128_store(sn + base + k, s);
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

/* dst[k][j][i] = src[k][i][j] for k < batch: the last two axes of [batch, m, n] swapped. */
EXPORT(transpose_last2)
void transpose_last2(const float* src, int batch, int m, int n, float* dst) {
  const int simd = (m % 4 == 0) && (n % 4 == 0);
  for (int k = 0; k < batch; k++) {
    const float* s = src + (long)k * m * n;
    float* d = dst + (long)k * m * n;
    if (!simd) {
      for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) d[(long)j * m + i] = s[(long)i * n + j];
      }
      continue;
    }
    for (int j0 = 0; j0 < n; j0 += 64) {
      const int j1 = j0 + 64 < n ? j0 + 64 : n;
      for (int i = 0; i < m; i += 4) {
        for (int j = j0; j < j1; j += 4) {
          v128_t r0 = wasm_v128_load(s + (long)(i + 0) * n + j);
          v128_t r1 = wasm_v128_load(s + (long)(i + 1) * n + j);
          v128_t r2 = wasm_v128_load(s + (long)(i + 2) * n + j);
          v128_t r3 = wasm_v128_load(s + (long)(i + 3) * n + j);
          transpose4(&r0, &r1, &r2, &r3);
          wasm_v128_store(d + (long)(j + 0) * m + i, r0);
          wasm_v128_store(d + (long)(j + 1) * m + i, r1);
          wasm_v128_store(d + (long)(j + 2) * m + i, r2);
          wasm_v128_store(d + (long)(j + 3) * m + i, r3);
        }
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
