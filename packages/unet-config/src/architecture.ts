/**
 * The U-Net's control flow, written once after the official `models/unet.py` `model()`, and run
 * by two interpreters: one over shapes (parameter list, FLOPs, resolutions: no tensors, so
 * `ddpm info` works for 114M-parameter models instantly) and one over tensors (unet.ts).
 */
import { type UNetConfig, validateUNetConfig } from './config';
import { unetError } from './errors';

/** What the control flow needs from an interpreter; V is a shape or a tensor. */
export interface ArchitectureInterpreter<V extends object> {
  /** Timestep embedding: sinusoidal(ch) → dense0 (4ch) → swish → dense1 (4ch). */
  timeEmbedding(): void;
  /** 3×3 stride-1 convolution of the input image (`conv_in`). */
  convIn(x: V, outChannels: number): V;
  resBlock(scope: string, x: V, outChannels: number): V;
  attnBlock(scope: string, x: V): V;
  downsample(scope: string, x: V): V;
  upsample(scope: string, x: V): V;
  /** Channel concatenation of the up path's input with a skip connection. */
  concat(x: V, skip: V): V;
  /** GroupNorm → swish → 3×3 conv to outChannels (`norm_out`, `conv_out`). */
  output(x: V, outChannels: number): V;
  resolution(x: V): number;
}

/** The last skip connection, taken off the stack. */
function pop<T>(xs: T[]): T {
  return at(xs.splice(-1, 1), 0);
}

/** `xs[i]`, which the validated configuration guarantees is there. */
function at<T>(xs: readonly T[], i: number): T {
  const x = xs[i];
  if (x === undefined) throw unetError('DDPM_UNET_CONFIG_INVALID', `internal error: no element ${i} of ${xs.length}`);
  return x;
}

/** Runs the official control flow on `input`; returns the output value. */
export function runArchitecture<V extends object>(
  configIn: UNetConfig,
  input: V,
  interp: ArchitectureInterpreter<V>,
): V {
  const config = validateUNetConfig(configIn);
  const { ch, chMult, numResBlocks, attnResolutions } = config;
  const levels = chMult.length;
  interp.timeEmbedding();
  // Downsampling
  const hs: V[] = [interp.convIn(input, ch)];
  for (let level = 0; level < levels; level++) {
    for (let block = 0; block < numResBlocks; block++) {
      let h = interp.resBlock(`down_${level}/block_${block}`, at(hs, hs.length - 1), ch * at(chMult, level));
      if (attnResolutions.includes(interp.resolution(h))) h = interp.attnBlock(`down_${level}/attn_${block}`, h);
      hs.push(h);
    }
    if (level !== levels - 1) hs.push(interp.downsample(`down_${level}/downsample`, at(hs, hs.length - 1)));
  }
  // Middle
  let h = at(hs, hs.length - 1);
  const midChannels = ch * at(chMult, levels - 1);
  h = interp.resBlock('mid/block_1', h, midChannels);
  h = interp.attnBlock('mid/attn_1', h);
  h = interp.resBlock('mid/block_2', h, midChannels);
  // Upsampling
  for (let level = levels - 1; level >= 0; level--) {
    for (let block = 0; block < numResBlocks + 1; block++) {
      h = interp.resBlock(`up_${level}/block_${block}`, interp.concat(h, pop(hs)), ch * at(chMult, level));
      if (attnResolutions.includes(interp.resolution(h))) h = interp.attnBlock(`up_${level}/attn_${block}`, h);
    }
    if (level !== 0) h = interp.upsample(`up_${level}/upsample`, h);
  }
  if (hs.length !== 0) throw new Error(`internal error: ${hs.length} skip connections left unused`);
  return interp.output(h, config.outChannels);
}

// ---------------------------------------------------------------------------------------------
// The shape interpreter

export type ParamInit =
  /** Glorot-uniform (fan_avg) scaled by `scale`: 1, or 1e-10 where the official code uses 0. */
  | { readonly kind: 'glorot'; readonly fanIn: number; readonly fanOut: number; readonly scale: number }
  | { readonly kind: 'zeros' }
  | { readonly kind: 'ones' };

export interface ParamSpec {
  /** Official variable scope, e.g. `down_1/block_0/conv1/W`. */
  readonly name: string;
  readonly shape: readonly number[];
  readonly init: ParamInit;
}

export interface LayerCost {
  readonly name: string;
  /** Floating-point operations for one image (a multiply-add counts 2). */
  readonly flops: number;
  readonly kind: 'conv' | 'dense' | 'attention';
}

export interface ArchitectureSummary {
  readonly config: UNetConfig;
  readonly params: readonly ParamSpec[];
  readonly totalParams: number;
  /** Parameter count per top-level block (`conv_in`, `down_0/block_0`, `mid/attn_1`, ...). */
  readonly paramsByBlock: readonly { block: string; params: number }[];
  readonly layerCosts: readonly LayerCost[];
  /** Convolution and dense FLOPs of one forward pass of one image. */
  readonly forwardFlopsConvDense: number;
  /** The attention einsums' FLOPs (QKᵀ and WV) of one forward pass of one image. */
  readonly forwardFlopsAttention: number;
  /**
   * Floats of the intermediate values one forward pass of one image produces (every op's output,
   * attention weights included): what training keeps for the backward pass, and what a step's
   * memory grows with per image (budgets.ts of @ddpm/settings bounds batch × this).
   */
  readonly activationFloats: number;
  /** Feature-map side and channel count at each level. */
  readonly levels: readonly { resolution: number; channels: number; attention: boolean }[];
}

interface Shape {
  readonly res: number;
  readonly c: number;
}

/** The zero-initialised layers of the official code (models/unet.py) get Glorot init scaled by 1e-10. */
export const NEAR_ZERO_INIT_SCALE = 1e-10;

class ShapeInterpreter implements ArchitectureInterpreter<Shape> {
  readonly params: ParamSpec[] = [];
  readonly costs: LayerCost[] = [];
  /** Floats of op outputs of one image's forward pass (see ArchitectureSummary.activationFloats). */
  activations = 0;

  constructor(private readonly config: UNetConfig) {}

  private conv(name: string, x: Shape, outC: number, k: number, stride: number, scale = 1): Shape {
    const fanIn = k * k * x.c;
    const fanOut = k * k * outC;
    this.params.push({ name: `${name}/W`, shape: [k, k, x.c, outC], init: { kind: 'glorot', fanIn, fanOut, scale } });
    this.params.push({ name: `${name}/b`, shape: [outC], init: { kind: 'zeros' } });
    const res = x.res / stride;
    this.costs.push({ name, flops: 2 * k * k * x.c * outC * res * res, kind: k === 1 ? 'dense' : 'conv' });
    this.activations += res * res * outC;
    return { res, c: outC };
  }

  private dense(name: string, inC: number, outC: number, rows: number, scale = 1): void {
    this.params.push({
      name: `${name}/W`,
      shape: [inC, outC],
      init: { kind: 'glorot', fanIn: inC, fanOut: outC, scale },
    });
    this.params.push({ name: `${name}/b`, shape: [outC], init: { kind: 'zeros' } });
    this.costs.push({ name, flops: 2 * inC * outC * rows, kind: 'dense' });
    this.activations += rows * outC;
  }

  private norm(name: string, c: number): void {
    this.params.push({ name: `${name}/gamma`, shape: [c], init: { kind: 'ones' } });
    this.params.push({ name: `${name}/beta`, shape: [c], init: { kind: 'zeros' } });
  }

  timeEmbedding(): void {
    const { ch } = this.config;
    this.dense('temb/dense0', ch, 4 * ch, 1);
    this.dense('temb/dense1', 4 * ch, 4 * ch, 1);
  }

  convIn(x: Shape, outC: number): Shape {
    return this.conv('conv_in', x, outC, 3, 1);
  }

  resBlock(scope: string, x: Shape, outC: number): Shape {
    const pixels = x.res * x.res;
    // norm1 and its swish; the time embedding added, norm2, swish, dropout, the residual sum.
    this.activations += 2 * pixels * x.c + 5 * pixels * outC;
    this.norm(`${scope}/norm1`, x.c);
    this.conv(`${scope}/conv1`, x, outC, 3, 1);
    this.dense(`${scope}/temb_proj`, 4 * this.config.ch, outC, 1);
    this.norm(`${scope}/norm2`, outC);
    this.conv(`${scope}/conv2`, { res: x.res, c: outC }, outC, 3, 1, NEAR_ZERO_INIT_SCALE);
    if (x.c !== outC) this.dense(`${scope}/nin_shortcut`, x.c, outC, x.res * x.res);
    return { res: x.res, c: outC };
  }

  attnBlock(scope: string, x: Shape): Shape {
    const n = x.res * x.res;
    // The normalised input, the weights before and after softmax, the weighted values, the residual sum.
    this.activations += 3 * n * x.c + 2 * n * n;
    this.norm(`${scope}/norm`, x.c);
    for (const p of ['q', 'k', 'v']) this.dense(`${scope}/${p}`, x.c, x.c, n);
    this.costs.push({ name: `${scope}/einsum`, flops: 2 * 2 * n * n * x.c, kind: 'attention' });
    this.dense(`${scope}/proj_out`, x.c, x.c, n, NEAR_ZERO_INIT_SCALE);
    return x;
  }

  downsample(scope: string, x: Shape): Shape {
    return this.config.resampleWithConv ? this.conv(`${scope}/conv`, x, x.c, 3, 2) : { res: x.res / 2, c: x.c };
  }

  upsample(scope: string, x: Shape): Shape {
    const up = { res: x.res * 2, c: x.c };
    this.activations += up.res * up.res * up.c;
    return this.config.resampleWithConv ? this.conv(`${scope}/conv`, up, x.c, 3, 1) : up;
  }

  concat(x: Shape, skip: Shape): Shape {
    this.activations += x.res * x.res * (x.c + skip.c);
    return { res: x.res, c: x.c + skip.c };
  }

  output(x: Shape, outC: number): Shape {
    this.activations += 2 * x.res * x.res * x.c;
    this.norm('norm_out', x.c);
    return this.conv('conv_out', x, outC, 3, 1, NEAR_ZERO_INIT_SCALE);
  }

  resolution(x: Shape): number {
    return x.res;
  }
}

/** Parameters, FLOPs and levels of a configuration, without allocating any tensor. */
export function describeArchitecture(config: UNetConfig): ArchitectureSummary {
  const interp = new ShapeInterpreter(config);
  runArchitecture(config, { res: config.imageSize, c: config.inChannels }, interp);
  const size = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);
  const byBlock = new Map<string, number>();
  for (const p of interp.params) {
    const parts = p.name.split('/');
    const block =
      parts[0] === 'conv_in' || parts[0] === 'conv_out' || parts[0] === 'norm_out'
        ? parts[0]
        : `${parts[0]}/${parts[1]}`;
    byBlock.set(block, (byBlock.get(block) ?? 0) + size(p.shape));
  }
  const sum = (kinds: LayerCost['kind'][]): number =>
    interp.costs.filter((c) => kinds.includes(c.kind)).reduce((a, c) => a + c.flops, 0);
  return {
    config,
    params: interp.params,
    totalParams: interp.params.reduce((a, p) => a + size(p.shape), 0),
    paramsByBlock: [...byBlock].map(([block, params]) => ({ block, params })),
    layerCosts: interp.costs,
    forwardFlopsConvDense: sum(['conv', 'dense']),
    forwardFlopsAttention: sum(['attention']),
    activationFloats: interp.activations,
    levels: config.chMult.map((m, i) => {
      const resolution = config.imageSize / 2 ** i;
      return { resolution, channels: config.ch * m, attention: config.attnResolutions.includes(resolution) };
    }),
  };
}
