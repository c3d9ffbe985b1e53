/**
 * Saving and loading U-Net parameters as safetensors bytes, with the config and format version in
 * the metadata. Loading checks every tensor's name and shape against the model and names the
 * first mismatch; nothing is assigned unless everything matches.
 */
import { type NamedArray, decodeSafetensors, encodeSafetensors } from '@ddpm/safetensors';
import * as tf from '@tensorflow/tfjs-core';

import { type UNetConfig, unetError, validateUNetConfig } from '@ddpm/unet-config';
import { UNet } from './unet';

export const WEIGHTS_FORMAT = 'ddpm-unet/1';

/** Reads named variables into host arrays (awaiting the backend). */
export async function readNamed(named: readonly [string, tf.Tensor][]): Promise<NamedArray[]> {
  return Promise.all(
    named.map(async ([name, v]) => ({ name, shape: v.shape, data: Float32Array.from(await v.data()) })),
  );
}

/** The model's parameters as safetensors bytes (config and format in the metadata). */
export async function saveUNetWeights(net: UNet, metadata: Record<string, string> = {}): Promise<Uint8Array> {
  return encodeSafetensors(await readNamed(net.namedVariables), {
    ...metadata,
    format: WEIGHTS_FORMAT,
    config: JSON.stringify(net.config),
  });
}

/** The U-Net config stored in weights written by {@link saveUNetWeights}. */
export function configFromWeights(bytes: Uint8Array): UNetConfig {
  const { metadata } = decodeSafetensors(bytes);
  if (metadata['format'] !== WEIGHTS_FORMAT || metadata['config'] === undefined) {
    throw unetError(
      'DDPM_WEIGHTS_INVALID',
      `weights carry no ${WEIGHTS_FORMAT} config (format ${JSON.stringify(metadata['format'])})`,
    );
  }
  return validateUNetConfig(JSON.parse(metadata['config']) as UNetConfig);
}

/** Checks decoded arrays against the model's parameters; throws naming the first mismatch. */
export function checkAgainst(net: UNet, arrays: readonly NamedArray[]): Map<string, NamedArray> {
  const byName = new Map(arrays.map((a) => [a.name, a]));
  for (const [name, v] of net.namedVariables) {
    const a = byName.get(name);
    if (a === undefined)
      throw unetError('DDPM_WEIGHTS_INVALID', `weights have no tensor ${JSON.stringify(name)} that the model needs`);
    if (a.shape.length !== v.shape.length || !a.shape.every((d, i) => d === v.shape[i])) {
      throw unetError(
        'DDPM_WEIGHTS_INVALID',
        `tensor ${JSON.stringify(name)} has shape [${a.shape.join(', ')}] in the weights but [${v.shape.join(', ')}] in the model`,
      );
    }
  }
  const extra = arrays.find((a) => !net.namedVariables.some(([name]) => name === a.name));
  if (extra !== undefined)
    throw unetError('DDPM_WEIGHTS_INVALID', `weights have a tensor ${JSON.stringify(extra.name)} the model does not`);
  return byName;
}

/** Assigns weights into an existing model of the same config (all or nothing). */
export function loadUNetWeights(net: UNet, bytes: Uint8Array): void {
  const { tensors } = decodeSafetensors(bytes);
  const byName = checkAgainst(net, tensors);
  tf.tidy(() => {
    for (const [name, v] of net.namedVariables) {
      const a = byName.get(name)!;
      v.assign(tf.tensor(a.data, [...a.shape], 'float32'));
    }
  });
}

/** A new model built from weights written by {@link saveUNetWeights}. */
export function unetFromWeights(bytes: Uint8Array): UNet {
  const config = configFromWeights(bytes);
  const { tensors } = decodeSafetensors(bytes);
  const map = new Map(tensors.map((a) => [a.name, tf.tensor(a.data, [...a.shape], 'float32')]));
  try {
    return new UNet(config, { tensors: map });
  } finally {
    for (const t of map.values()) t.dispose();
  }
}
