/**
 * The Inception-v3 architecture against an independent implementation: torchvision's own
 * `inception_v3` (Debian's python3-torchvision, which .ci/run installs) with random weights and
 * random BatchNorm statistics, exported to safetensors, must give the same pool3 features and
 * logits on the same images within float32 tolerance (our FID-specific pools switched to
 * torchvision's for this comparison). The FID-specific operations are checked separately against
 * PyTorch: the average pool without the padding in the count, the padded max pool, the bilinear
 * resize to 299. Slow tier; skipped, saying so, without python3-torch and python3-torchvision.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { initBackend } from '@ddpm/kernels';
import { type NamedArray, decodeSafetensors } from '@ddpm/safetensors';
import * as tf from '@tensorflow/tfjs-core';

import { PYTHON, describeWithPython } from '../../../../test/support/python';
import { InceptionV3 } from './inception-v3';

jest.setTimeout(300_000);

const SCRIPT = path.join(__dirname, '..', '..', 'scripts', 'torchvision_inception_reference.py');
const CONVERTER = path.join(__dirname, '..', '..', '..', '..', 'scripts', 'convert-fid-inception.py');

let dir: string;
let arrays: Map<string, NamedArray>;

/** NCHW (PyTorch) → NHWC (ours). */
function nhwc(a: NamedArray): tf.Tensor4D {
  const [n, c, h, w] = a.shape as [number, number, number, number];
  return tf.tidy(() => tf.transpose<tf.Tensor4D>(tf.tensor4d(a.data, [n, c, h, w]), [0, 2, 3, 1]));
}

/** max |ours − theirs| relative to max |theirs|. */
function relativeError(ours: Float32Array | Float64Array, theirs: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < theirs.length; i++) {
    diff = Math.max(diff, Math.abs(ours[i]! - theirs[i]!));
    scale = Math.max(scale, Math.abs(theirs[i]!));
  }
  return diff / scale;
}

describeWithPython(['torch', 'torchvision'], 'apt-get install python3-torch python3-torchvision')(
  'Inception-v3 against torchvision',
  () => {
    beforeAll(async () => {
      await initBackend({ backend: 'wasm' });
      dir = mkdtempSync(path.join(tmpdir(), 'ddpm-inception-'));
      const file = path.join(dir, 'reference.safetensors');
      execFileSync(PYTHON, [SCRIPT, file, '0', path.join(dir, 'random-weights.pth')], { stdio: 'pipe' });
      arrays = new Map(decodeSafetensors(new Uint8Array(readFileSync(file))).tensors.map((a) => [a.name, a]));
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('gives torchvision’s pool3 features and logits for the same random weights and images', () => {
      const weights = [...arrays.values()].filter((a) => !a.name.startsWith('test.') && !a.name.startsWith('ops.'));
      const before = tf.memory().numTensors;
      const net = new InceptionV3(weights, 'random', 'torchvision', { size: 299, channels: 3 });
      expect(net.classes).toBe(1008);
      const images = nhwc(arrays.get('test.images')!);
      const { featuresBD, logitsBK } = net.forward299(images);
      const features = featuresBD.dataSync() as Float32Array;
      const logits = logitsBK.dataSync() as Float32Array;
      expect(featuresBD.shape).toEqual([2, 2048]);
      const featureError = relativeError(features, arrays.get('test.pool3')!.data);
      const logitError = relativeError(logits, arrays.get('test.logits')!.data);
      // float32 through 94 convolutions in another order of summation; measured 3.2e-7 and 5.3e-7.
      expect(featureError).toBeLessThan(1e-5);
      expect(logitError).toBeLessThan(1e-5);
      tf.dispose([images, featuresBD, logitsBK]);

      // The FID variant changes the pools, and so the features (measured: 7.7e-2 of their scale).
      const fid = new InceptionV3(weights, 'random', 'fid', { size: 299, channels: 3 });
      // Random weights are not the published ones: never called FID.
      expect([fid.name, fid.distanceName]).toEqual(['inception_unverified', 'fd_inception_unverified']);
      const verified = new InceptionV3(weights, 'x', 'fid', { size: 299, channels: 3 }, true);
      expect([verified.name, verified.distanceName]).toEqual(['inception_fid', 'fid']);
      verified.dispose();
      const again = nhwc(arrays.get('test.images')!);
      const fidOut = fid.forward299(again);
      const fidError = relativeError(fidOut.featuresBD.dataSync() as Float32Array, arrays.get('test.pool3')!.data);
      expect(fidError).toBeGreaterThan(1e-3);
      tf.dispose([again, fidOut.featuresBD, fidOut.logitsBK]);
      net.dispose();
      fid.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });

    it('pools as PyTorch does: FID’s average pool excludes the padding, torchvision’s includes it, the max pool ignores it', () => {
      const x = nhwc(arrays.get('ops.x')!);
      const expectClose = (ours: tf.Tensor4D, name: string): void => {
        const theirs = nhwc(arrays.get(name)!);
        expect(relativeError(ours.dataSync() as Float32Array, theirs.dataSync() as Float32Array)).toBeLessThan(1e-6);
        tf.dispose([ours, theirs]);
      };
      expectClose(tf.avgPool(x, 3, 1, 'same'), 'ops.avg_exclude_pad');
      expectClose(
        tf.avgPool(
          tf.pad(x, [
            [0, 0],
            [1, 1],
            [1, 1],
            [0, 0],
          ]),
          3,
          1,
          'valid',
        ),
        'ops.avg_include_pad',
      );
      expectClose(tf.maxPool(x, 3, 1, 'same'), 'ops.max_pad');
      x.dispose();
    });

    it('resizes to 299 as PyTorch’s bilinear interpolation with align_corners=False', () => {
      const small = nhwc(arrays.get('ops.small')!);
      const resized = tf.image.resizeBilinear(small, [299, 299], false, true);
      const theirs = nhwc(arrays.get('ops.resized')!);
      expect(relativeError(resized.dataSync() as Float32Array, theirs.dataSync() as Float32Array)).toBeLessThan(1e-5);
      tf.dispose([small, resized, theirs]);
    });

    it('takes model-space grey images: replicated to three channels and resized, as the extractor interface', () => {
      const weights = [...arrays.values()].filter((a) => !a.name.startsWith('test.') && !a.name.startsWith('ops.'));
      const net = new InceptionV3(weights, 'random', 'fid', { size: 32, channels: 1 });
      const grey = tf.randomUniform<tf.Rank.R4>([1, 32, 32, 1], -1, 1);
      const viaExtract = net.extract(grey);
      const manual = tf.tidy(() =>
        net.forward299(tf.image.resizeBilinear(tf.tile<tf.Tensor4D>(grey, [1, 1, 1, 3]), [299, 299], false, true)),
      );
      expect(Array.from(viaExtract.featuresBD.dataSync())).toEqual(Array.from(manual.featuresBD.dataSync()));
      expect(() => net.extract(tf.zeros<tf.Rank.R4>([1, 28, 28, 1]))).toThrow(
        /takes 32 x 32 x 1 images, got 28 x 28 x 1/,
      );
      tf.dispose([grey, viaExtract.featuresBD, viaExtract.logitsBK, manual.featuresBD, manual.logitsBK]);
      net.dispose();
    });

    it('loads what scripts/convert-fid-inception.py makes of a .pth state dict, and calls it FID only for the published weights', () => {
      const converted = path.join(dir, 'converted.safetensors');
      const out = execFileSync(PYTHON, [CONVERTER, path.join(dir, 'random-weights.pth'), converted], {
        encoding: 'utf8',
      });
      expect(out).toMatch(/converted.safetensors: \d+ tensors/);
      const net = InceptionV3.fromWeights(new Uint8Array(readFileSync(converted)), { size: 299, channels: 3 });
      expect([net.verified, net.name, net.distanceName]).toEqual([
        false,
        'inception_unverified',
        'fd_inception_unverified',
      ]);
      expect(net.weightsSha256).toMatch(/^[0-9a-f]{64}$/);
      const images = nhwc(arrays.get('test.images')!);
      const { featuresBD, logitsBK } = net.forward299(images);
      // The FID pools differ from torchvision's; the torchvision-pooled network gives its features (first test).
      expect(featuresBD.shape).toEqual([2, 2048]);
      tf.dispose([images, featuresBD, logitsBK]);
      net.dispose();
      // A file whose name promises a hash it does not have is refused.
      const liar = path.join(dir, 'pt_inception-2015-12-05-6726825d.pth');
      execFileSync('cp', [path.join(dir, 'random-weights.pth'), liar]);
      expect(() => execFileSync(PYTHON, [CONVERTER, liar, converted], { stdio: 'pipe' })).toThrow(
        /does not start with 6726825d/,
      );
    });

    it('names what is missing or misshapen in the weights', () => {
      const weights = [...arrays.values()].filter((a) => !a.name.startsWith('test.') && !a.name.startsWith('ops.'));
      expect(
        () =>
          new InceptionV3(
            weights.filter((a) => a.name !== 'Mixed_6c.branch7x7_2.conv.weight'),
            'x',
            'fid',
            { size: 299, channels: 3 },
          ),
      ).toThrow(/Mixed_6c.branch7x7_2.conv.weight is missing/);
      const wrong = weights.map((a) => (a.name === 'fc.weight' ? { ...a, shape: [2048, 1008] } : a));
      expect(() => new InceptionV3(wrong, 'x', 'fid', { size: 299, channels: 3 })).toThrow(
        /fc.weight has 1008 inputs, expected 2048/,
      );
    });
  },
);
