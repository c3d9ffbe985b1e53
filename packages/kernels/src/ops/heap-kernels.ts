/**
 * Our own SIMD kernels (c/ddpm_kernels.c) as methods on tensors of the tfjs-wasm heap: each
 * allocates its outputs on the heap and calls the kernel (the build wasm-kernels.ts chose) with
 * their byte offsets, in place of slow or many-pass tfjs-wasm kernels (GroupNorm+swish: ~8 forward,
 * ~14 backward), biases and residuals added in the pass that writes a product.
 */
import * as tf from '@tensorflow/tfjs-core';

import { type KernelExports } from './kernel-exports';
import { type WasmHeap } from './wasm-heap';

/** Tiles per block of the Winograd kernels (WINO_BLOCK in the C source): sizes their scratch. */
const WINOGRAD_BLOCK = 64;
/** Output pixels per block of the direct convolution (CONV_BLOCK in the C source). */
const DIRECT_CONV_BLOCK = 64;

/** The direct convolution kernels' shape arguments: B, H, W, Cin, k, stride, padding, Ho, Wo, Cout. */
function directShape(
  x: tf.Tensor4D,
  filter: tf.Tensor4D,
  stride: number,
  pad: readonly [number, number],
  out: readonly [number, number],
) {
  const [b, h, w, cin] = x.shape;
  const [k, , , cout] = filter.shape;
  return [b, h, w, cin, k, stride, pad[0], pad[1], out[0], out[1], cout] as const;
}

export interface GroupNormForward {
  /** y, or swish(y) when asked. */
  readonly out: tf.Tensor4D;
  /** σ(y) when swish and σ were asked (the backward needs it), else undefined. */
  readonly sig: tf.Tensor4D | undefined;
  /** Per image and channel, repeated over each group's channels: [B, C]. */
  readonly mean: tf.Tensor2D;
  readonly rstd: tf.Tensor2D;
}

/** What a convolution adds to conv(x) + bias: a bias per image [B, Cout] and a residual [B, H, W, Cout]. */
export interface ConvAddends {
  readonly imageBias?: tf.Tensor2D;
  readonly residual?: tf.Tensor4D;
}

export class WasmKernels {
  constructor(
    private readonly heap: WasmHeap,
    private readonly exports: KernelExports,
  ) {}

  /** Whether the kernels take this NHWC shape (channels in SIMD lanes of four, whole groups). */
  static supports(shape: readonly number[], numGroups: number): boolean {
    const c = shape[3]!;
    return shape.length === 4 && c % 4 === 0 && c % numGroups === 0;
  }

  groupNormForward(
    x: tf.Tensor4D,
    gamma: tf.Tensor1D,
    beta: tf.Tensor1D,
    numGroups: number,
    epsilon: number,
    swish: boolean,
    keepSigmoid = true,
  ): GroupNormForward {
    const [b, h, w, c] = x.shape;
    const heap = this.heap;
    const out = heap.allocate([b, h, w, c]) as tf.Tensor4D;
    const sig = swish && keepSigmoid ? (heap.allocate([b, h, w, c]) as tf.Tensor4D) : undefined;
    const mean = heap.allocate([b, c]) as tf.Tensor2D;
    const rstd = heap.allocate([b, c]) as tf.Tensor2D;
    this.withScratch(2 * c, (scratch) => {
      this.exports.group_norm_forward(
        heap.offsetOf(x),
        b,
        h * w,
        c,
        numGroups,
        heap.offsetOf(gamma),
        heap.offsetOf(beta),
        epsilon,
        swish ? 1 : 0,
        heap.offsetOf(out),
        sig === undefined ? 0 : heap.offsetOf(sig),
        heap.offsetOf(mean),
        heap.offsetOf(rstd),
        scratch,
      );
    });
    return { out, sig, mean, rstd };
  }

  /** [dx, dγ, dβ] for a forward that produced `fwd` (σ and the output are used with swish). */
  groupNormBackward(
    dy: tf.Tensor4D,
    x: tf.Tensor4D,
    gamma: tf.Tensor1D,
    fwd: GroupNormForward,
    numGroups: number,
  ): [tf.Tensor4D, tf.Tensor1D, tf.Tensor1D] {
    const [b, h, w, c] = x.shape;
    const heap = this.heap;
    const dx = heap.allocate([b, h, w, c]) as tf.Tensor4D;
    const dgamma = heap.allocate([c]) as tf.Tensor1D;
    const dbeta = heap.allocate([c]) as tf.Tensor1D;
    this.withScratch(3 * c, (scratch) => {
      this.exports.group_norm_backward(
        heap.offsetOf(dy),
        heap.offsetOf(x),
        fwd.sig === undefined ? 0 : heap.offsetOf(fwd.sig),
        fwd.sig === undefined ? 0 : heap.offsetOf(fwd.out),
        b,
        h * w,
        c,
        numGroups,
        heap.offsetOf(gamma),
        heap.offsetOf(fwd.mean),
        heap.offsetOf(fwd.rstd),
        fwd.sig === undefined ? 0 : 1,
        heap.offsetOf(dx),
        heap.offsetOf(dgamma),
        heap.offsetOf(dbeta),
        scratch,
      );
    });
    return [dx, dgamma, dbeta];
  }

  padToChannelsFirst(x: tf.Tensor4D, top: number, bottom: number, left: number, right: number): tf.Tensor4D {
    const [b, h, w, c] = x.shape;
    const [h2, w2] = [h + top + bottom, w + left + right];
    const out = this.heap.allocate([c, h2, w2, b]) as tf.Tensor4D;
    this.exports.pad_to_channels_first(this.heap.offsetOf(x), b, h, w, c, top, left, h2, w2, this.heap.offsetOf(out));
    return out;
  }

  transposeLast2<T extends tf.Tensor2D | tf.Tensor3D>(x: T): T {
    const [batch, m, n] = x.rank === 2 ? [1, x.shape[0], x.shape[1]] : (x.shape as [number, number, number]);
    const out = this.heap.allocate(x.rank === 2 ? [n, m] : [batch, n, m]) as T;
    this.exports.transpose_last2(this.heap.offsetOf(x), batch, m, n, this.heap.offsetOf(out));
    return out;
  }

  splitChannels(x: tf.Tensor4D, ca: number): [tf.Tensor4D, tf.Tensor4D] {
    const [b, h, w, c] = x.shape;
    const a = this.heap.allocate([b, h, w, ca]) as tf.Tensor4D;
    const rest = this.heap.allocate([b, h, w, c - ca]) as tf.Tensor4D;
    this.exports.split_channels(
      this.heap.offsetOf(x),
      b * h * w,
      ca,
      c - ca,
      this.heap.offsetOf(a),
      this.heap.offsetOf(rest),
    );
    return [a, rest];
  }

  concatChannels(a: tf.Tensor4D, b: tf.Tensor4D): tf.Tensor4D {
    const [n, h, w, ca] = a.shape;
    const cb = b.shape[3];
    const out = this.heap.allocate([n, h, w, ca + cb]) as tf.Tensor4D;
    this.exports.concat_channels(
      this.heap.offsetOf(a),
      this.heap.offsetOf(b),
      n * h * w,
      ca,
      cb,
      this.heap.offsetOf(out),
    );
    return out;
  }

  dropout<T extends tf.Tensor>(x: T, rate: number, seed: number): T {
    const out = this.heap.allocate([...x.shape]) as T;
    const threshold = Math.min(2 ** 32 - 1, Math.round(rate * 2 ** 32));
    this.exports.dropout(
      this.heap.offsetOf(x),
      x.size,
      seed >>> 0,
      threshold >>> 0,
      1 / (1 - rate),
      this.heap.offsetOf(out),
    );
    return out;
  }

  /** Σ over all leading axes, keeping the last: [..., C] → [C]. */
  sumToLastAxis(x: tf.Tensor): tf.Tensor1D {
    const n = x.shape[x.rank - 1]!;
    const out = this.heap.allocate([n]) as tf.Tensor1D;
    this.exports.sum_rows(this.heap.offsetOf(x), x.size / n, n, this.heap.offsetOf(out));
    return out;
  }

  /** Σ over each image's pixels: [B, H, W, C] → [B, C] (the gradient of a per-image bias). */
  sumPerImage(x: tf.Tensor4D): tf.Tensor2D {
    const [b, h, w, c] = x.shape;
    const out = this.heap.allocate([b, c]) as tf.Tensor2D;
    const [from, to] = [this.heap.offsetOf(x), this.heap.offsetOf(out)];
    for (let n = 0; n < b; n++) this.exports.sum_rows(from + 4 * n * h * w * c, h * w, c, to + 4 * n * c);
    return out;
  }

  /**
   * conv2d(x, g, 1, 'same') + bias (+ imageBias per image) (+ residual) by Winograd F(2×2, 3×3)
   * (winograd.ts), the filter given by its transform u [16, Cin, Cout] (winogradFilter or
   * winogradRotate). Channels are multiples of 4.
   */
  winogradConv(x: tf.Tensor4D, u: tf.Tensor3D, bias: tf.Tensor1D | undefined, addends: ConvAddends = {}): tf.Tensor4D {
    const [b, h, w, cin] = x.shape;
    const cout = u.shape[2];
    const y = this.heap.allocate([b, h, w, cout]) as tf.Tensor4D;
    this.withScratch(16 * WINOGRAD_BLOCK * (cin + cout), (scratch) => {
      this.exports.winograd_conv(
        this.heap.offsetOf(x),
        this.heap.offsetOf(u),
        this.offsetOrNull(bias),
        this.offsetOrNull(addends.imageBias),
        this.offsetOrNull(addends.residual),
        b,
        h,
        w,
        cin,
        cout,
        this.heap.offsetOf(y),
        scratch,
      );
    });
    return y;
  }

  /**
   * conv2d(x, filter, stride) + bias as patches times the filter (c/ddpm_kernels.c direct_conv),
   * with `pad` [top, left] before the image and an output of `out` [Ho, Wo]; Cout a multiple of 4.
   */
  directConv(
    x: tf.Tensor4D,
    filter: tf.Tensor4D,
    bias: tf.Tensor1D | undefined,
    stride: number,
    pad: readonly [number, number],
    out: readonly [number, number],
  ): tf.Tensor4D {
    const [k, , cin, cout] = filter.shape;
    const y = this.heap.allocate([x.shape[0], out[0], out[1], cout]) as tf.Tensor4D;
    this.withScratch(DIRECT_CONV_BLOCK * k * k * cin, (scratch) => {
      const shape = directShape(x, filter, stride, pad, out);
      const at = (t: tf.Tensor): number => this.heap.offsetOf(t);
      this.exports.direct_conv(at(x), at(filter), this.offsetOrNull(bias), ...shape, at(y), scratch);
    });
    return y;
  }

  /**
   * directConv's gradients for the output gradient dy [B, Ho, Wo, Cout] (Cout a multiple of 4):
   * the filter's [k, k, Cin, Cout] and the input's, of x's shape.
   */
  directConvGradients(
    x: tf.Tensor4D,
    filter: tf.Tensor4D,
    dy: tf.Tensor4D,
    stride: number,
    pad: readonly [number, number],
  ): [tf.Tensor4D, tf.Tensor4D] {
    const [k, , cin, cout] = filter.shape;
    const row = Math.ceil((k * k * cin) / 4) * 4;
    const dg = this.heap.allocate([k, k, cin, cout]) as tf.Tensor4D;
    const dx = this.heap.allocate([...x.shape]) as tf.Tensor4D;
    this.withScratch(DIRECT_CONV_BLOCK * row + row * cout, (scratch) => {
      const shape = directShape(x, filter, stride, pad, [dy.shape[1], dy.shape[2]]);
      const at = (t: tf.Tensor): number => this.heap.offsetOf(t);
      this.exports.direct_conv_filter_grad(at(x), at(dy), ...shape, at(dg), scratch);
      this.exports.direct_conv_input_grad(at(dy), at(filter), ...shape, at(dx), scratch);
    });
    return [dg, dx];
  }

  /**
   * The transform of conv2d(x, g, 1, 'same')'s filter gradient for the output gradient dy:
   * [16, Cin, Cout] (winogradFilterGrad turns it into [3, 3, Cin, Cout]).
   */
  winogradFilterProducts(x: tf.Tensor4D, dy: tf.Tensor4D): tf.Tensor3D {
    const [b, h, w, cin] = x.shape;
    const cout = dy.shape[3];
    const du = this.heap.allocate([16, cin, cout]) as tf.Tensor3D;
    this.withScratch(16 * WINOGRAD_BLOCK * (cin + cout), (scratch) => {
      this.exports.winograd_filter_products(
        this.heap.offsetOf(x),
        this.heap.offsetOf(dy),
        b,
        h,
        w,
        cin,
        cout,
        this.heap.offsetOf(du),
        scratch,
      );
    });
    return du;
  }

  /** The transform of the filter rotated by 180° with in/out swapped: [16, Cin, Cout] → [16, Cout, Cin]. */
  winogradRotate(u: tf.Tensor3D): tf.Tensor3D {
    const [, cin, cout] = u.shape;
    const out = this.heap.allocate([16, cout, cin]) as tf.Tensor3D;
    this.exports.winograd_rotate(this.heap.offsetOf(u), cin, cout, this.heap.offsetOf(out));
    return out;
  }

  /** The filter transform U = G g Gᵀ: [3, 3, Cin, Cout] → [16, Cin, Cout] (Cout a multiple of 4). */
  winogradFilter(filter: tf.Tensor4D): tf.Tensor3D {
    const [, , cin, cout] = filter.shape;
    const u = this.heap.allocate([16, cin, cout]) as tf.Tensor3D;
    this.exports.winograd_filter(this.heap.offsetOf(filter), cin * cout, this.heap.offsetOf(u));
    return u;
  }

  /** The filter transform's adjoint: dU [16, Cin, Cout] → dg [3, 3, Cin, Cout]. */
  winogradFilterGrad(du: tf.Tensor3D): tf.Tensor4D {
    const [, cin, cout] = du.shape;
    const dg = this.heap.allocate([3, 3, cin, cout]) as tf.Tensor4D;
    this.exports.winograd_filter_grad(this.heap.offsetOf(du), cin * cout, this.heap.offsetOf(dg));
    return dg;
  }

  /**
   * aᵀ·b without a transposed copy: [T, M]ᵀ·[T, N] → [M, N], or per batch element for 3-D
   * operands, [Z, T, M] and [Z, T, N] → [Z, M, N]. M and N are multiples of 4.
   */
  matMulTN<R extends tf.Tensor2D | tf.Tensor3D>(a: R, b: R): R {
    const [z, t, m] = a.rank === 2 ? [1, a.shape[0], a.shape[1]] : (a.shape as [number, number, number]);
    const n = b.shape[b.rank - 1]!;
    const out = this.heap.allocate(a.rank === 2 ? [m, n] : [z, m, n]) as R;
    this.exports.matmul_tn(this.heap.offsetOf(a), this.heap.offsetOf(b), z, t, m, n, this.heap.offsetOf(out));
    return out;
  }

  /**
   * a·b per batch element (+ bias per column) (+ residual): [Z, M, K]·[Z, K, N] → [Z, M, N], N a
   * multiple of 4.
   */
  batchMatMul(a: tf.Tensor3D, b: tf.Tensor3D, addends: { bias?: tf.Tensor1D; residual?: tf.Tensor } = {}): tf.Tensor3D {
    const [z, m, k] = a.shape;
    const n = b.shape[2];
    const out = this.heap.allocate([z, m, n]) as tf.Tensor3D;
    this.exports.matmul_nn(
      this.heap.offsetOf(a),
      this.heap.offsetOf(b),
      this.offsetOrNull(addends.bias),
      this.offsetOrNull(addends.residual),
      z,
      m,
      k,
      n,
      this.heap.offsetOf(out),
    );
    return out;
  }

  /** A tensor's offset on the heap, or 0 (the kernels' null) for none. */
  /** Runs `run` with a scratch buffer of `floats` on the heap (its offset), freed after. */
  private withScratch(floats: number, run: (scratch: number) => void): void {
    const scratch = this.heap.allocate([floats]);
    try {
      run(this.heap.offsetOf(scratch));
    } finally {
      scratch.dispose();
    }
  }

  private offsetOrNull(t: tf.Tensor | undefined): number {
    return t === undefined ? 0 : this.heap.offsetOf(t);
  }

  /**
   * One Adam step and the EMA after it for one parameter tensor (optimizer-step.ts): the new
   * parameter, moments and EMA, as new tensors.
   */
  adamEmaStep(
    tensors: { p: tf.Tensor; g: tf.Tensor; m: tf.Tensor; v: tf.Tensor; ema: tf.Tensor; gOffset?: number },
    k: { scale: number; beta1: number; beta2: number; epsilon: number; lrT: number; decay: number },
  ): { p: tf.Tensor; m: tf.Tensor; v: tf.Tensor; ema: tf.Tensor } {
    const shape = [...tensors.p.shape];
    const out = {
      p: this.heap.allocate(shape),
      m: this.heap.allocate(shape),
      v: this.heap.allocate(shape),
      ema: this.heap.allocate(shape),
    };
    const at = (t: tf.Tensor): number => this.heap.offsetOf(t);
    this.exports.adam_ema_step(
      at(tensors.p),
      at(tensors.g) + 4 * (tensors.gOffset ?? 0),
      at(tensors.m),
      at(tensors.v),
      at(tensors.ema),
      tensors.p.size,
      k.scale === 1 ? 0 : 1,
      k.scale,
      k.beta1,
      1 - k.beta1,
      k.beta2,
      1 - k.beta2,
      k.epsilon,
      k.lrT,
      k.decay,
      1 - k.decay,
      at(out.p),
      at(out.m),
      at(out.v),
      at(out.ema),
    );
    return out;
  }

  /** Whether matMulTN takes operands with these last dimensions (M and N). */
  static supportsTN(m: number, n: number): boolean {
    return m % 4 === 0 && n % 4 === 0;
  }

  /** Softmax over the last axis (c/ddpm_kernels.c softmax: its order of summation is fixed). */
  softmax<T extends tf.Tensor>(x: T): T {
    const n = x.shape[x.rank - 1]!;
    const y = this.heap.allocate([...x.shape]) as T;
    this.exports.softmax(this.heap.offsetOf(x), x.size / n, n, this.heap.offsetOf(y));
    return y;
  }

  softmaxGrad<T extends tf.Tensor>(y: T, dy: T): T {
    const n = y.shape[y.rank - 1]!;
    const dx = this.heap.allocate([...y.shape]) as T;
    this.exports.softmax_grad(this.heap.offsetOf(y), this.heap.offsetOf(dy), y.size / n, n, this.heap.offsetOf(dx));
    return dx;
  }
}
