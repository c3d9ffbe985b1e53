/**
 * The U-Net benchmark: a training step (forward + backward + Adam) and a sampling step (one
 * reverse-process step of Algorithm 2) of a preset, against the backend's own forward conv2d on
 * the model's most common layer, all measured in the same run. Ratios are what to read: the
 * machines are shared and absolute times drift.
 */
import { type BackendInfo, wasmKernelsFused } from '@ddpm/kernels';
import { GaussianDiffusion, Rng } from '@ddpm/diffusion';
import { type ArchitectureSummary, UNet, type UNetConfig, describeArchitecture, preset } from '@ddpm/unet';
import * as tf from '@tensorflow/tfjs-core';

import { type OpProfile, type Phase, profileOps } from './op-profile';
import { type Timing, gflops, round, timeInterleaved } from './timing';

export interface UNetBenchOptions {
  readonly preset: string;
  readonly batch: number;
  readonly steps: number;
  readonly backend: BackendInfo;
  /** Also profile one training and one sampling step by op kind (op-profile.ts). */
  readonly profile?: boolean;
}

export async function benchUNet(options: UNetBenchOptions): Promise<Record<string, unknown>> {
  const config = preset(options.preset);
  const summary = describeArchitecture(config);
  const steps = unetSteps(config, options.batch);
  try {
    // Rounds interleave the three so that all see the same machine: these machines are shared,
    // and a reference timed only at the start drifts by ±20% against steps timed later. The
    // reference is the fastest of five convs per round, so the ratios err on the low side.
    const rounds = await timeInterleaved(
      options.steps,
      { train: steps.train, sample: steps.sample, conv: steps.conv },
      { conv: 5 },
    );
    let profile: { train: OpProfile; sample: OpProfile } | undefined;
    if (options.profile) {
      profile = {
        train: await profileOps(steps.profiledTrain, 'forward'),
        sample: await profileOps(steps.sample, 'sample'),
      };
    }
    return unetReport(options, summary, { size: config.imageSize, channels: steps.convChannels }, rounds, profile);
  } finally {
    steps.dispose();
  }
}

/** What the benchmark times, on one set of inputs: a preset's model, its optimizer and the reference conv. */
interface UNetSteps {
  /** Forward, backward and Adam. */
  readonly train: () => Promise<void>;
  /** The same step for `profileOps`, telling it where backward and update begin. */
  readonly profiledTrain: (phase: (p: Phase) => void) => Promise<void>;
  /** One reverse-process step. */
  readonly sample: () => Promise<void>;
  /** The backend's own forward conv2d on the model's most common layer. */
  readonly conv: () => Promise<void>;
  /** The reference conv's input and output channels. */
  readonly convChannels: number;
  readonly dispose: () => void;
}

/** A fresh model of the preset (seed 0) on random inputs of `B` images, and its steps. */
function unetSteps(config: UNetConfig, B: number): UNetSteps {
  const rng = Rng.fromSeed(0);
  const net = new UNet(config, { uniform: () => rng.uniform() });
  const diffusion = new GaussianDiffusion({ schedule: { kind: 'linear' } });
  const S = config.imageSize;
  const x = tf.tensor4d(rng.normals(B * S * S * config.inChannels), [B, S, S, config.inChannels]);
  const eps = tf.tensor4d(rng.normals(B * S * S * config.outChannels), [B, S, S, config.outChannels]);
  const t = tf.tensor1d(rng.ints(1000, B), 'int32');
  const optimizer = tf.train.adam(2e-4);
  let dropoutSeed = 0;
  // The most common layer: a 3×3 stride-1 conv at the top resolution, ch·chMult[0] → same.
  const c = config.ch * config.chMult[0]!;
  const convX = tf.tensor4d(rng.normals(B * S * S * c), [B, S, S, c]);
  const convW = tf.tensor4d(
    rng.normals(9 * c * c).map((v) => v * 0.05),
    [3, 3, c, c],
  );
  const model = net.asDenoiseFn();
  const tHost = Int32Array.from(t.dataSync());
  const loss = (): tf.Scalar =>
    tf.mean<tf.Scalar>(tf.squaredDifference(eps, net.apply(x, t, { training: true, dropoutSeed: dropoutSeed++ })));
  return {
    train: async () => {
      const value = optimizer.minimize(loss, true, net.variables)!;
      await value.data();
      value.dispose();
    },
    profiledTrain: async (phase) => {
      const { value, grads } = tf.variableGrads(() => {
        const l = loss();
        phase('backward');
        return l;
      }, net.variables);
      phase('update');
      optimizer.applyGradients(grads as unknown as Parameters<typeof optimizer.applyGradients>[0]);
      await value.data();
      tf.dispose([value, ...Object.values(grads)]);
    },
    sample: async () => {
      const out = diffusion.pSample(model, x, tHost, eps, { clipDenoised: true });
      await out.sample.data();
      tf.dispose([out.sample, out.predXStart]);
    },
    conv: async () => {
      const y = tf.conv2d(convX, convW, 1, 'same');
      await y.data();
      y.dispose();
    },
    convChannels: c,
    dispose: () => {
      tf.dispose([x, eps, t, convX, convW]);
      optimizer.dispose();
      net.dispose();
    },
  };
}

/** The benchmark's JSON: each step's time and GFLOP/s, and the steps' GFLOP/s over the reference conv's. */
function unetReport(
  options: UNetBenchOptions,
  summary: ArchitectureSummary,
  conv: { size: number; channels: number },
  rounds: Record<'train' | 'sample' | 'conv', Timing>,
  profile: { train: OpProfile; sample: OpProfile } | undefined,
): Record<string, unknown> {
  const B = options.batch;
  const { size: S, channels: c } = conv;
  const train = rounds.train;
  const sample = rounds.sample;
  const forwardFlops = summary.forwardFlopsConvDense * B;
  const convFlops = 2 * 9 * c * c * S * S * B;
  const trainGflops = gflops(3 * forwardFlops, train.medianMs);
  const sampleGflops = gflops(forwardFlops, sample.medianMs);
  const convGflops = gflops(convFlops, rounds.conv.medianMs);
  return {
    benchmark: 'unet',
    preset: options.preset,
    batch: B,
    repeats: options.steps,
    backend: options.backend.name,
    ...(options.backend.name === 'wasm' || options.backend.name === 'native'
      ? { fusedMultiplyAdd: wasmKernelsFused() }
      : {}),
    params: summary.totalParams,
    forwardGflopPerImage: round(summary.forwardFlopsConvDense / 1e9, 4),
    trainStep: {
      medianMs: round(train.medianMs, 1),
      gflops: round(trainGflops, 2),
      flopsCounted: '3 x forward conv+dense',
    },
    sampleStep: {
      medianMs: round(sample.medianMs, 1),
      gflops: round(sampleGflops, 2),
      flopsCounted: 'forward conv+dense',
    },
    convReference: {
      layer: `conv2d 3x3 ${S}x${S}x${c}->${c}, batch ${B}`,
      medianMs: round(rounds.conv.medianMs, 2),
      gflops: round(convGflops, 2),
    },
    trainOverConv: round(trainGflops / convGflops, 3),
    sampleOverConv: round(sampleGflops / convGflops, 3),
    ...(profile ? { profile } : {}),
  };
}
