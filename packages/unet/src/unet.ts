/**
 * The U-Net of Ho et al. (2020), Appendix B, as the official `models/unet.py`: a PixelCNN++-style
 * Wide-ResNet U-Net with GroupNorm, swish, a sinusoidal timestep embedding added into every
 * residual block, single-head self-attention at chosen resolutions, stride-2 convolutions down,
 * nearest-neighbour ×2 plus a conv up, and skip connections concatenated on the way up.
 */
import {
  type ConvAddends,
  concatChannels,
  conv2d,
  dense,
  dropout,
  groupNorm,
  matMul,
  softmax,
  swish,
  upsampleNearest2x,
} from '@ddpm/kernels';
import * as tf from '@tensorflow/tfjs-core';

import {
  type ArchitectureInterpreter,
  type ArchitectureSummary,
  type ParamSpec,
  type UNetConfig,
  describeArchitecture,
  runArchitecture,
  unetError,
} from '@ddpm/unet-config';

export interface ApplyOptions {
  /** Training mode enables dropout. Default false (sampling and evaluation). */
  readonly training?: boolean;
  /** Seed of this call's dropout masks; required when training with dropout > 0. */
  readonly dropoutSeed?: number;
}

export type UNetInit =
  /** Fresh weights: Glorot-uniform from a uniform (0, 1) source (seeded by the caller). */
  | { readonly uniform: () => number }
  /** Weights copied from named tensors (see weights-io.ts); shapes must match the config. */
  | { readonly tensors: ReadonlyMap<string, tf.Tensor> };

/** The timestep embedding of the Transformer (Vaswani et al. 2017) as the official code: [sin, cos]. */
export function timestepEmbedding(t: tf.Tensor1D, dim: number): tf.Tensor2D {
  return tf.tidy(() => {
    const half = Math.floor(dim / 2);
    const scale = Math.log(10000) / (half - 1);
    const freqs = tf.exp(tf.mul(tf.range(0, half, 1, 'float32'), -scale));
    const args = tf.mul(tf.expandDims(tf.cast(t, 'float32'), 1), tf.expandDims(freqs, 0));
    const emb = tf.concat([tf.sin(args), tf.cos(args)], 1);
    return (
      dim % 2 === 1
        ? tf.pad(emb, [
            [0, 0],
            [0, 1],
          ])
        : emb
    ) as tf.Tensor2D;
  });
}

function initialValues(spec: ParamSpec, uniform: () => number): Float32Array {
  const size = spec.shape.reduce((a, b) => a * b, 1);
  const init = spec.init;
  switch (init.kind) {
    case 'zeros':
      return new Float32Array(size);
    case 'ones':
      return new Float32Array(size).fill(1);
    case 'glorot': {
      // variance_scaling(scale, mode='fan_avg', distribution='uniform') of the official code.
      const limit = Math.sqrt((3 * init.scale) / ((init.fanIn + init.fanOut) / 2));
      const out = new Float32Array(size);
      for (let i = 0; i < size; i++) out[i] = (2 * uniform() - 1) * limit;
      return out;
    }
    default: {
      const unreachable: never = init;
      throw unetError('DDPM_UNET_CONFIG_INVALID', `unknown init ${JSON.stringify(unreachable)}`);
    }
  }
}

export class UNet {
  readonly config: UNetConfig;
  readonly summary: ArchitectureSummary;
  private readonly params = new Map<string, tf.Variable>();
  private disposed = false;

  constructor(config: UNetConfig, init: UNetInit) {
    this.summary = describeArchitecture(config);
    this.config = this.summary.config;
    for (const spec of this.summary.params) {
      let value: tf.Tensor;
      if ('uniform' in init) {
        value = tf.tensor(initialValues(spec, init.uniform), [...spec.shape], 'float32');
      } else {
        const source = init.tensors.get(spec.name);
        if (source === undefined) {
          this.dispose();
          throw unetError('DDPM_WEIGHTS_INVALID', `weights have no tensor ${JSON.stringify(spec.name)}`);
        }
        if (source.shape.length !== spec.shape.length || !source.shape.every((d, i) => d === spec.shape[i])) {
          this.dispose();
          throw unetError(
            'DDPM_WEIGHTS_INVALID',
            `tensor ${JSON.stringify(spec.name)} has shape [${source.shape.join(', ')}] but the model needs [${spec.shape.join(', ')}]`,
          );
        }
        value = source.clone();
      }
      this.params.set(spec.name, tf.variable(value, true));
      value.dispose();
    }
  }

  /** Trainable parameters in a fixed order (the official variable order). */
  get variables(): tf.Variable[] {
    return [...this.params.values()];
  }

  /** [official name, variable] pairs in the same order as {@link variables}. */
  get namedVariables(): [string, tf.Variable][] {
    return [...this.params];
  }

  get numParams(): number {
    return this.summary.totalParams;
  }

  /** The parameter with an official name such as `down_0/block_1/conv2/W`. */
  param(name: string): tf.Variable {
    const v = this.params.get(name);
    if (v === undefined)
      throw unetError('DDPM_UNET_CONFIG_INVALID', `the model has no parameter ${JSON.stringify(name)}`);
    return v;
  }

  /**
   * ε_θ(x_t, t) (or whatever the diffusion's parameterisation asks for): x [B, S, S, inChannels]
   * in [-1, 1]-ish scale, t [B] int32 → [B, S, S, outChannels].
   */
  apply(x: tf.Tensor4D, t: tf.Tensor1D, options: ApplyOptions = {}): tf.Tensor4D {
    if (this.disposed) throw unetError('DDPM_UNET_CONFIG_INVALID', 'the model has been disposed');
    const { imageSize: s, inChannels } = this.config;
    if (x.rank !== 4 || x.shape[1] !== s || x.shape[2] !== s || x.shape[3] !== inChannels) {
      throw unetError(
        'DDPM_UNET_SHAPE_MISMATCH',
        `input has shape [${x.shape.join(', ')}] but the model takes [B, ${s}, ${s}, ${inChannels}]`,
      );
    }
    if (t.rank !== 1 || t.shape[0] !== x.shape[0]) {
      throw unetError('DDPM_UNET_SHAPE_MISMATCH', `t has shape [${t.shape.join(', ')}] but the batch is ${x.shape[0]}`);
    }
    const training = options.training ?? false;
    if (training && this.config.dropout > 0 && options.dropoutSeed === undefined) {
      throw unetError('DDPM_UNET_CONFIG_INVALID', 'training with dropout needs a dropoutSeed (for reproducible masks)');
    }
    return tf.tidy(() =>
      runArchitecture(
        this.config,
        x,
        new TensorInterpreter(this.config, this.params, t, training, options.dropoutSeed ?? 0),
      ),
    );
  }

  /** The model as the diffusion package's `(x_t, t) => output` function. */
  asDenoiseFn(options: ApplyOptions | (() => ApplyOptions) = {}): (xT: tf.Tensor, t: tf.Tensor1D) => tf.Tensor {
    return (xT, t) => this.apply(xT as tf.Tensor4D, t, typeof options === 'function' ? options() : options);
  }

  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    this.params.clear();
    this.disposed = true;
  }
}

class TensorInterpreter implements ArchitectureInterpreter<tf.Tensor4D> {
  private tembSwish: tf.Tensor2D | undefined;
  private dropoutCalls = 0;

  constructor(
    private readonly config: UNetConfig,
    private readonly params: ReadonlyMap<string, tf.Variable>,
    private readonly t: tf.Tensor1D,
    private readonly training: boolean,
    private readonly dropoutSeed: number,
  ) {}

  private p<T extends tf.Tensor>(name: string): T {
    const v = this.params.get(name);
    if (v === undefined) throw new Error(`internal error: no parameter ${name}`);
    return v as unknown as T;
  }

  private conv(scope: string, x: tf.Tensor4D, stride: 1 | 2 = 1, addends: ConvAddends = {}): tf.Tensor4D {
    return conv2d(x, this.p(`${scope}/W`), this.p(`${scope}/b`), stride, addends);
  }

  private dense(scope: string, x: tf.Tensor, residual?: tf.Tensor): tf.Tensor {
    return dense(x, this.p(`${scope}/W`), this.p(`${scope}/b`), residual);
  }

  private norm(scope: string, x: tf.Tensor4D, withSwish = false): tf.Tensor4D {
    return groupNorm(x, this.p(`${scope}/gamma`), this.p(`${scope}/beta`), {
      numGroups: this.config.numGroups,
      swish: withSwish,
    });
  }

  timeEmbedding(): void {
    const emb = timestepEmbedding(this.t, this.config.ch);
    const hidden = this.dense('temb/dense1', swish(this.dense('temb/dense0', emb)));
    // Every residual block applies the nonlinearity to temb before its projection: do it once.
    this.tembSwish = swish(hidden) as tf.Tensor2D;
  }

  convIn(x: tf.Tensor4D): tf.Tensor4D {
    return this.conv('conv_in', x);
  }

  resBlock(scope: string, x: tf.Tensor4D, outChannels: number): tf.Tensor4D {
    let h = this.norm(`${scope}/norm1`, x, true);
    // h + temb and shortcut + h are added by the convolutions, in the pass that writes their output.
    const temb = this.dense(`${scope}/temb_proj`, this.tembSwish!) as tf.Tensor2D; // [B, outChannels]
    h = this.conv(`${scope}/conv1`, h, 1, { imageBias: temb });
    h = this.norm(`${scope}/norm2`, h, true);
    if (this.training && this.config.dropout > 0) {
      h = dropout(h, this.config.dropout, this.dropoutSeed * 1000 + this.dropoutCalls++);
    }
    const shortcut = x.shape[3] === outChannels ? x : (this.dense(`${scope}/nin_shortcut`, x) as tf.Tensor4D);
    return this.conv(`${scope}/conv2`, h, 1, { residual: shortcut });
  }

  attnBlock(scope: string, x: tf.Tensor4D): tf.Tensor4D {
    const [b, hh, ww, c] = x.shape;
    const h = this.norm(`${scope}/norm`, x);
    // Three products rather than one with concatenated weights: splitting the result copies the
    // whole tensor per piece on wasm.
    const project = (name: string): tf.Tensor3D => tf.reshape(this.dense(`${scope}/${name}`, h), [b, hh * ww, c]);
    const [q, k, v] = [project('q'), project('k'), project('v')];
    // (q·C^−½)·kᵀ rather than (q·kᵀ)·C^−½: the same product, scaled on the smaller tensor.
    const logits = matMul(tf.mul<tf.Tensor3D>(q, c ** -0.5), k, true); // [B, HW, HW]
    const attended = matMul(softmax(logits), v); // [B, HW, C]
    return this.dense(`${scope}/proj_out`, tf.reshape(attended, [b, hh, ww, c]), x) as tf.Tensor4D;
  }

  downsample(scope: string, x: tf.Tensor4D): tf.Tensor4D {
    if (this.config.resampleWithConv) return this.conv(`${scope}/conv`, x, 2);
    return tf.avgPool(x, 2, 2, 'same');
  }

  upsample(scope: string, x: tf.Tensor4D): tf.Tensor4D {
    const up = upsampleNearest2x(x);
    return this.config.resampleWithConv ? this.conv(`${scope}/conv`, up) : up;
  }

  concat(x: tf.Tensor4D, skip: tf.Tensor4D): tf.Tensor4D {
    return concatChannels(x, skip);
  }

  output(x: tf.Tensor4D): tf.Tensor4D {
    return this.conv('conv_out', this.norm('norm_out', x, true));
  }

  resolution(x: tf.Tensor4D): number {
    return x.shape[1];
  }
}
