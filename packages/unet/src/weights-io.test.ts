import { decodeSafetensors } from '@ddpm/safetensors';
import * as tf from '@tensorflow/tfjs-core';

import { SMALL, lcgNormals, makeUNet, perturbAll, useBackend } from './test-support';
import { configFromWeights, loadUNetWeights, saveUNetWeights, unetFromWeights } from './weights-io';

beforeAll(() => useBackend('wasm'));

const x = (): tf.Tensor4D => tf.tensor4d(lcgNormals(5, 2 * 8 * 8 * 2), [2, 8, 8, 2]);
const t = (): tf.Tensor1D => tf.tensor1d([10, 20], 'int32');

describe('weights I/O (safetensors)', () => {
  it('round-trips: a loaded model computes exactly what the saved one did', async () => {
    const net = makeUNet(SMALL, 1);
    perturbAll(net, 2);
    const bytes = await saveUNetWeights(net, { step: '42' });
    const copy = unetFromWeights(bytes);
    expect(copy.config).toEqual(net.config);
    const [xx, tt] = [x(), t()];
    expect(tf.max(tf.abs(tf.sub(net.apply(xx, tt), copy.apply(xx, tt)))).dataSync()[0]).toBe(0);
    // Loading into an existing model of the same config.
    const other = makeUNet(SMALL, 9);
    loadUNetWeights(other, bytes);
    expect(tf.max(tf.abs(tf.sub(net.apply(xx, tt), other.apply(xx, tt)))).dataSync()[0]).toBe(0);
    expect(decodeSafetensors(bytes).metadata['step']).toBe('42');
    [net, copy, other].forEach((n) => n.dispose());
  });

  it('writes a standard safetensors header: length prefix, dtype, shape, offsets, metadata', async () => {
    const net = makeUNet(SMALL, 1);
    const bytes = await saveUNetWeights(net);
    const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    expect(headerLength % 8).toBe(0);
    const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + headerLength)).toString('utf8'));
    expect(header['conv_in/W']).toEqual({ dtype: 'F32', shape: [3, 3, 2, 16], data_offsets: expect.any(Array) });
    expect(header['__metadata__'].format).toBe('ddpm-unet/1');
    expect(header['__metadata__']['ddpm.sha256']).toMatch(/^[0-9a-f]{64}$/);
    expect(configFromWeights(bytes)).toEqual(SMALL);
    net.dispose();
  });

  it('refuses a model of another config, naming the first mismatching tensor, and assigns nothing', async () => {
    const small = makeUNet(SMALL, 1);
    const wider = makeUNet({ ...SMALL, ch: 32 }, 1);
    const before = wider.param('conv_in/W').dataSync().slice();
    const smallBytes = await saveUNetWeights(small);
    const noAttn = makeUNet({ ...SMALL, attnResolutions: [] }, 1);
    const noAttnBytes = await saveUNetWeights(noAttn);
    expect(() => loadUNetWeights(wider, smallBytes)).toThrow(
      'tensor "temb/dense0/W" has shape [16, 64] in the weights but [32, 128] in the model',
    );
    expect([...wider.param('conv_in/W').dataSync()]).toEqual([...before]);
    expect(() => loadUNetWeights(noAttn, smallBytes)).toThrow(
      'weights have a tensor "down_1/attn_0/norm/gamma" the model does not',
    );
    expect(() => loadUNetWeights(small, noAttnBytes)).toThrow(
      'weights have no tensor "down_1/attn_0/norm/gamma" that the model needs',
    );
    [small, wider, noAttn].forEach((n) => n.dispose());
  });

  it('refuses corrupt and truncated bytes with a clear error', async () => {
    const net = makeUNet(SMALL, 1);
    const bytes = await saveUNetWeights(net);
    const corrupt = bytes.slice();
    corrupt[corrupt.length - 5]! ^= 0xff;
    expect(() => loadUNetWeights(net, corrupt)).toThrow(
      /weights checksum mismatch: header says sha256 [0-9a-f]{64}, data is [0-9a-f]{64}/,
    );
    expect(() => loadUNetWeights(net, bytes.subarray(0, 100))).toThrow(/truncated or not safetensors/);
    expect(() => loadUNetWeights(net, new Uint8Array(3))).toThrow(
      'weights are 3 bytes long, too short for a safetensors header',
    );
    net.dispose();
  });

  it('leaks no tensors when saving and loading', async () => {
    const net = makeUNet(SMALL, 1);
    const bytes = await saveUNetWeights(net);
    loadUNetWeights(net, bytes);
    const before = tf.memory().numTensors;
    loadUNetWeights(net, await saveUNetWeights(net));
    unetFromWeights(bytes).dispose();
    expect(tf.memory().numTensors).toBe(before);
    net.dispose();
  });
});
