/**
 * Inception-v3 as FID defines it: the 2015-12-05 TensorFlow graph of Heusel et al.'s TTUR code,
 * in the form pytorch-fid's `FIDInceptionV3` reproduces it (learned from its structure; no code
 * copied), in TensorFlow.js for inference.
 *
 * - The network is torchvision's `inception_v3` layer for layer (names are its state-dict keys,
 *   so weights convert one to one), each convolution a conv without bias + BatchNorm (ε 0.001) +
 *   ReLU, folded at load into one fused convolution with bias.
 * - `variant: 'fid'` changes the pools as the TF graph has them: the average pools of the A, C
 *   and first E blocks exclude the padding from their count (TF 'SAME'), and the last E block
 *   (Mixed_7c) max-pools; the classifier has 1008 outputs. `variant: 'torchvision'` keeps
 *   torchvision's pools (averages over 9, padding included): the architecture test compares
 *   that variant with torchvision itself.
 * - Inputs: images in [−1, 1] (our model space; pytorch-fid maps [0, 1] to it the same way),
 *   grey replicated to three channels, resized bilinearly to 299 × 299 (half-pixel centres,
 *   PyTorch's `align_corners=False`), features = the 2048 average-pooled activations (pool3), and
 *   the logits for the Inception Score.
 *
 * The weights are the user's: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, converted to
 * safetensors by `scripts/convert-fid-inception.py` (docs/evaluation.md, "Numbers comparable with the paper"). Nothing is called FID
 * without them.
 */
import { sha256Hex } from '@ddpm/core';
import { type NamedArray, decodeSafetensors } from '@ddpm/safetensors';
import * as tf from '@tensorflow/tfjs-core';

import { evalError } from '../errors';
import { type FeatureExtractor } from './extractor';

export const INCEPTION_FID_NAME = 'inception_fid';
/** The sha256 prefix torch.hub checks, from the published file's name. */
export const FID_INCEPTION_PTH_SHA256_PREFIX = '6726825d';
export const INCEPTION_INPUT = { size: 299 } as const;
const BN_EPSILON = 0.001;

export type InceptionVariant = 'fid' | 'torchvision';

/** A conv + BN + ReLU: kernel (kh, kw), stride, padding (ph, pw) as torchvision's BasicConv2d. */
interface ConvSpec {
  readonly name: string;
  readonly k: readonly [number, number];
  readonly stride?: number;
  readonly pad?: readonly [number, number];
}

type Folded = {
  readonly filter: tf.Tensor4D;
  readonly bias: tf.Tensor1D;
  readonly stride: number;
  readonly pad: readonly [number, number];
};

const c = (name: string, kh: number, kw = kh, stride = 1, pad: [number, number] = [0, 0]): ConvSpec => ({
  name,
  k: [kh, kw],
  stride,
  pad,
});

/** Every convolution of the network (torchvision's names), for loading and checking weights. */
function convSpecs(): ConvSpec[] {
  const specs: ConvSpec[] = [
    c('Conv2d_1a_3x3', 3, 3, 2),
    c('Conv2d_2a_3x3', 3),
    c('Conv2d_2b_3x3', 3, 3, 1, [1, 1]),
    c('Conv2d_3b_1x1', 1),
    c('Conv2d_4a_3x3', 3),
  ];
  for (const m of ['Mixed_5b', 'Mixed_5c', 'Mixed_5d']) {
    specs.push(c(`${m}.branch1x1`, 1), c(`${m}.branch5x5_1`, 1), c(`${m}.branch5x5_2`, 5, 5, 1, [2, 2]));
    specs.push(
      c(`${m}.branch3x3dbl_1`, 1),
      c(`${m}.branch3x3dbl_2`, 3, 3, 1, [1, 1]),
      c(`${m}.branch3x3dbl_3`, 3, 3, 1, [1, 1]),
      c(`${m}.branch_pool`, 1),
    );
  }
  specs.push(
    c('Mixed_6a.branch3x3', 3, 3, 2),
    c('Mixed_6a.branch3x3dbl_1', 1),
    c('Mixed_6a.branch3x3dbl_2', 3, 3, 1, [1, 1]),
    c('Mixed_6a.branch3x3dbl_3', 3, 3, 2),
  );
  for (const m of ['Mixed_6b', 'Mixed_6c', 'Mixed_6d', 'Mixed_6e']) {
    specs.push(
      c(`${m}.branch1x1`, 1),
      c(`${m}.branch7x7_1`, 1),
      c(`${m}.branch7x7_2`, 1, 7, 1, [0, 3]),
      c(`${m}.branch7x7_3`, 7, 1, 1, [3, 0]),
    );
    specs.push(
      c(`${m}.branch7x7dbl_1`, 1),
      c(`${m}.branch7x7dbl_2`, 7, 1, 1, [3, 0]),
      c(`${m}.branch7x7dbl_3`, 1, 7, 1, [0, 3]),
    );
    specs.push(
      c(`${m}.branch7x7dbl_4`, 7, 1, 1, [3, 0]),
      c(`${m}.branch7x7dbl_5`, 1, 7, 1, [0, 3]),
      c(`${m}.branch_pool`, 1),
    );
  }
  specs.push(c('Mixed_7a.branch3x3_1', 1), c('Mixed_7a.branch3x3_2', 3, 3, 2));
  specs.push(
    c('Mixed_7a.branch7x7x3_1', 1),
    c('Mixed_7a.branch7x7x3_2', 1, 7, 1, [0, 3]),
    c('Mixed_7a.branch7x7x3_3', 7, 1, 1, [3, 0]),
    c('Mixed_7a.branch7x7x3_4', 3, 3, 2),
  );
  for (const m of ['Mixed_7b', 'Mixed_7c']) {
    specs.push(
      c(`${m}.branch1x1`, 1),
      c(`${m}.branch3x3_1`, 1),
      c(`${m}.branch3x3_2a`, 1, 3, 1, [0, 1]),
      c(`${m}.branch3x3_2b`, 3, 1, 1, [1, 0]),
    );
    specs.push(
      c(`${m}.branch3x3dbl_1`, 1),
      c(`${m}.branch3x3dbl_2`, 3, 3, 1, [1, 1]),
      c(`${m}.branch3x3dbl_3a`, 1, 3, 1, [0, 1]),
      c(`${m}.branch3x3dbl_3b`, 3, 1, 1, [1, 0]),
    );
    specs.push(c(`${m}.branch_pool`, 1));
  }
  return specs;
}

export class InceptionV3 implements FeatureExtractor {
  readonly name: string;
  readonly distanceName: string;
  readonly featureDim = 2048;
  readonly classes: number;
  /** 16 images of 299 x 299: the largest activations (35 x 35 x 288 per image) stay near 100 MB. */
  readonly batch = 16;
  readonly input: { readonly size: number; readonly channels: 1 | 3 };
  readonly preprocessing: string;
  private readonly convs = new Map<string, Folded>();
  private readonly fc: { readonly weight: tf.Tensor2D; readonly bias: tf.Tensor1D };

  /**
   * From named arrays in torchvision's layout (conv weights [out, in, kh, kw], BN weight, bias,
   * running_mean, running_var; fc.weight [classes, 2048], fc.bias). `input` is the size and
   * channels of the images it will be given (they are resized to 299 × 299, grey replicated).
   */
  constructor(
    arrays: readonly NamedArray[],
    readonly weightsSha256: string,
    readonly variant: InceptionVariant,
    input: { readonly size: number; readonly channels: 1 | 3 },
    /** The weights are the published FID ones (their source file's sha256 checked): only then is the distance called "fid". */
    readonly verified = false,
  ) {
    const byName = new Map(arrays.map((a) => [a.name, a]));
    const need = (name: string, rank: number): NamedArray => {
      const a = byName.get(name);
      if (!a)
        throw evalError(
          'DDPM_EVAL_FILE_INVALID',
          `Inception weights: ${name} is missing (are these torchvision/pytorch-fid Inception-v3 weights converted by scripts/convert-fid-inception.py?)`,
        );
      if (a.shape.length !== rank)
        throw evalError(
          'DDPM_EVAL_FILE_INVALID',
          `Inception weights: ${name} has shape [${a.shape.join(', ')}], expected rank ${rank}`,
        );
      return a;
    };
    try {
      for (const spec of convSpecs()) {
        const w = need(`${spec.name}.conv.weight`, 4);
        const [out, inC, kh, kw] = w.shape as [number, number, number, number];
        if (kh !== spec.k[0] || kw !== spec.k[1])
          throw evalError(
            'DDPM_EVAL_FILE_INVALID',
            `Inception weights: ${spec.name} has a ${kh} x ${kw} kernel, expected ${spec.k[0]} x ${spec.k[1]}`,
          );
        const gamma = need(`${spec.name}.bn.weight`, 1).data;
        const beta = need(`${spec.name}.bn.bias`, 1).data;
        const mean = need(`${spec.name}.bn.running_mean`, 1).data;
        const variance = need(`${spec.name}.bn.running_var`, 1).data;
        // BN folded into the conv: W'[o] = W[o]·γ/√(σ²+ε), b' = β − μ·γ/√(σ²+ε); [O,I,kh,kw] → [kh,kw,I,O].
        const filter = new Float32Array(kh * kw * inC * out);
        const bias = new Float32Array(out);
        for (let o = 0; o < out; o++) {
          const scale = gamma[o]! / Math.sqrt(variance[o]! + BN_EPSILON);
          bias[o] = beta[o]! - mean[o]! * scale;
          for (let i = 0; i < inC; i++) {
            for (let y = 0; y < kh; y++)
              for (let x = 0; x < kw; x++)
                filter[((y * kw + x) * inC + i) * out + o] = w.data[((o * inC + i) * kh + y) * kw + x]! * scale;
          }
        }
        this.convs.set(spec.name, {
          filter: tf.tensor4d(filter, [kh, kw, inC, out]),
          bias: tf.tensor1d(bias),
          stride: spec.stride ?? 1,
          pad: spec.pad ?? [0, 0],
        });
      }
      const fcW = need('fc.weight', 2);
      const fcB = need('fc.bias', 1);
      const [classes, features] = fcW.shape as [number, number];
      if (features !== 2048)
        throw evalError('DDPM_EVAL_FILE_INVALID', `Inception weights: fc.weight has ${features} inputs, expected 2048`);
      this.classes = classes;
      // [classes, 2048] → [2048, classes].
      const wt = new Float32Array(features * classes);
      for (let k = 0; k < classes; k++)
        for (let f = 0; f < features; f++) wt[f * classes + k] = fcW.data[k * features + f]!;
      this.fc = { weight: tf.tensor2d(wt, [features, classes]), bias: tf.tensor1d(fcB.data) };
    } catch (err) {
      this.dispose();
      throw err;
    }
    this.name =
      variant === 'torchvision' ? 'inception_v3_torchvision' : verified ? INCEPTION_FID_NAME : 'inception_unverified';
    this.distanceName = variant === 'fid' && verified ? 'fid' : `fd_${this.name}`;
    this.input = input;
    this.preprocessing = `${input.size} x ${input.size} x ${input.channels} in [-1, 1]${input.channels === 1 ? ', grey replicated to 3 channels' : ''}, resized bilinearly (half-pixel centres) to 299 x 299`;
  }

  /**
   * The FID network from a file written by scripts/convert-fid-inception.py: "fid" when the file
   * it was converted from had the published sha256 (prefix 6726825d), `fd_inception_unverified`
   * otherwise. `weightsSha256` recorded with results is the converted file's.
   */
  static fromWeights(bytes: Uint8Array, input: { readonly size: number; readonly channels: 1 | 3 }): InceptionV3 {
    const { tensors, metadata } = decodeSafetensors(bytes);
    const source = metadata['source.sha256'] ?? '';
    return new InceptionV3(tensors, sha256Hex(bytes), 'fid', input, source.startsWith(FID_INCEPTION_PTH_SHA256_PREFIX));
  }

  private conv(name: string, x: tf.Tensor4D): tf.Tensor4D {
    const f = this.convs.get(name)!;
    const [ph, pw] = f.pad;
    const padded =
      ph === 0 && pw === 0
        ? x
        : tf.pad(x, [
            [0, 0],
            [ph, ph],
            [pw, pw],
            [0, 0],
          ]);
    return tf.fused.conv2d({
      x: padded,
      filter: f.filter,
      bias: f.bias,
      strides: f.stride,
      pad: 'valid',
      activation: 'relu',
    });
  }

  /** 3 × 3, stride 1, padding 1 average pool: FID's excludes the padding from the count (TF 'SAME'), torchvision's divides by 9. */
  private avgPoolSame(x: tf.Tensor4D): tf.Tensor4D {
    if (this.variant === 'fid') return tf.avgPool(x, 3, 1, 'same');
    return tf.avgPool(
      tf.pad(x, [
        [0, 0],
        [1, 1],
        [1, 1],
        [0, 0],
      ]),
      3,
      1,
      'valid',
    );
  }

  private blockA(m: string, x: tf.Tensor4D): tf.Tensor4D {
    const b1 = this.conv(`${m}.branch1x1`, x);
    const b5 = this.conv(`${m}.branch5x5_2`, this.conv(`${m}.branch5x5_1`, x));
    const b3 = this.conv(`${m}.branch3x3dbl_3`, this.conv(`${m}.branch3x3dbl_2`, this.conv(`${m}.branch3x3dbl_1`, x)));
    const bp = this.conv(`${m}.branch_pool`, this.avgPoolSame(x));
    return tf.concat([b1, b5, b3, bp], 3);
  }

  private blockB(x: tf.Tensor4D): tf.Tensor4D {
    const m = 'Mixed_6a';
    const b3 = this.conv(`${m}.branch3x3`, x);
    const bd = this.conv(`${m}.branch3x3dbl_3`, this.conv(`${m}.branch3x3dbl_2`, this.conv(`${m}.branch3x3dbl_1`, x)));
    return tf.concat([b3, bd, tf.maxPool(x, 3, 2, 'valid')], 3);
  }

  private blockC(m: string, x: tf.Tensor4D): tf.Tensor4D {
    const b1 = this.conv(`${m}.branch1x1`, x);
    const b7 = this.conv(`${m}.branch7x7_3`, this.conv(`${m}.branch7x7_2`, this.conv(`${m}.branch7x7_1`, x)));
    let bd = this.conv(`${m}.branch7x7dbl_1`, x);
    for (const k of [2, 3, 4, 5]) bd = this.conv(`${m}.branch7x7dbl_${k}`, bd);
    const bp = this.conv(`${m}.branch_pool`, this.avgPoolSame(x));
    return tf.concat([b1, b7, bd, bp], 3);
  }

  private blockD(x: tf.Tensor4D): tf.Tensor4D {
    const m = 'Mixed_7a';
    const b3 = this.conv(`${m}.branch3x3_2`, this.conv(`${m}.branch3x3_1`, x));
    let b7 = this.conv(`${m}.branch7x7x3_1`, x);
    for (const k of [2, 3, 4]) b7 = this.conv(`${m}.branch7x7x3_${k}`, b7);
    return tf.concat([b3, b7, tf.maxPool(x, 3, 2, 'valid')], 3);
  }

  /** `last`: Mixed_7c, whose pool branch max-pools in the FID graph. */
  private blockE(m: string, x: tf.Tensor4D, last: boolean): tf.Tensor4D {
    const b1 = this.conv(`${m}.branch1x1`, x);
    const s3 = this.conv(`${m}.branch3x3_1`, x);
    const b3 = tf.concat([this.conv(`${m}.branch3x3_2a`, s3), this.conv(`${m}.branch3x3_2b`, s3)], 3);
    const sd = this.conv(`${m}.branch3x3dbl_2`, this.conv(`${m}.branch3x3dbl_1`, x));
    const bd = tf.concat([this.conv(`${m}.branch3x3dbl_3a`, sd), this.conv(`${m}.branch3x3dbl_3b`, sd)], 3);
    const pooled = last && this.variant === 'fid' ? tf.maxPool(x, 3, 1, 'same') : this.avgPoolSame(x);
    return tf.concat([b1, b3, bd, this.conv(`${m}.branch_pool`, pooled)], 3);
  }

  /** The network on 299 × 299 × 3 images in [−1, 1]: pool3 features and logits. */
  forward299(x: tf.Tensor4D): { featuresBD: tf.Tensor2D; logitsBK: tf.Tensor2D } {
    return tf.tidy(() => {
      let h = this.conv('Conv2d_2b_3x3', this.conv('Conv2d_2a_3x3', this.conv('Conv2d_1a_3x3', x)));
      h = tf.maxPool(h, 3, 2, 'valid');
      h = this.conv('Conv2d_4a_3x3', this.conv('Conv2d_3b_1x1', h));
      h = tf.maxPool(h, 3, 2, 'valid');
      for (const m of ['Mixed_5b', 'Mixed_5c', 'Mixed_5d']) h = this.blockA(m, h);
      h = this.blockB(h);
      for (const m of ['Mixed_6b', 'Mixed_6c', 'Mixed_6d', 'Mixed_6e']) h = this.blockC(m, h);
      h = this.blockD(h);
      h = this.blockE('Mixed_7b', h, false);
      h = this.blockE('Mixed_7c', h, true);
      const featuresBD = tf.mean<tf.Tensor2D>(h, [1, 2]);
      const logitsBK = tf.add<tf.Tensor2D>(tf.matMul(featuresBD, this.fc.weight), this.fc.bias);
      return { featuresBD, logitsBK };
    });
  }

  /** Model-space images (the declared input) → 299 × 299 × 3 → features and logits. */
  extract(imagesBHWC: tf.Tensor4D): { featuresBD: tf.Tensor2D; logitsBK: tf.Tensor2D } {
    const [, h, w, ch] = imagesBHWC.shape;
    if (h !== this.input.size || w !== this.input.size || ch !== this.input.channels) {
      throw evalError(
        'DDPM_EVAL_INCOMPARABLE',
        `this Inception takes ${this.input.size} x ${this.input.size} x ${this.input.channels} images, got ${h} x ${w} x ${ch}`,
      );
    }
    const resized = tf.tidy(() => {
      const rgb = ch === 1 ? tf.tile(imagesBHWC, [1, 1, 1, 3]) : imagesBHWC;
      return h === 299 && w === 299 ? tf.clone(rgb) : tf.image.resizeBilinear(rgb, [299, 299], false, true);
    });
    try {
      return this.forward299(resized);
    } finally {
      resized.dispose();
    }
  }

  dispose(): void {
    for (const f of this.convs.values()) tf.dispose([f.filter, f.bias]);
    this.convs.clear();
    const fc = this.fc as typeof this.fc | undefined; // absent when the constructor failed
    if (fc) tf.dispose([fc.weight, fc.bias]);
  }
}
