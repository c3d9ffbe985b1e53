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
