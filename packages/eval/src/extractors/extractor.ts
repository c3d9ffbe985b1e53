/**
 * What turns images into the features a distance compares. Every result records the extractor's
 * name, the sha256 of its weights and its preprocessing, so two numbers are only ever compared
 * when they came from the same network on the same inputs (docs/evaluation.md).
 */
import type * as tf from '@tensorflow/tfjs-core';

export interface ExtractorInfo {
  /** e.g. `fmnist_cnn`, `inception_fid`. */
  readonly name: string;
  /**
   * What its Fréchet distance is called: `fid` only for the FID Inception with its published
   * weights; `fd_<name>` for anything else, so it is never shown as FID.
   */
  readonly distanceName: string;
  /** sha256 of the weights' tensor data (hex). */
  readonly weightsSha256: string;
  readonly featureDim: number;
  /** Size of the logits (for the Inception Score); 0 when the network has none. */
  readonly classes: number;
  /** The images it takes: square, this size and channel count, values in [−1, 1]. */
  readonly input: { readonly size: number; readonly channels: 1 | 3 };
  /** How model-space images become its input, for the record. */
  readonly preprocessing: string;
}

export interface FeatureExtractor extends ExtractorInfo {
  /** Images per call that keep its activations in a few hundred MB. */
  readonly batch: number;
  /** Features [B, featureDim] and logits [B, classes] of images [B, size, size, channels] in [−1, 1]. */
  extract(imagesBHWC: tf.Tensor4D): { readonly featuresBD: tf.Tensor2D; readonly logitsBK?: tf.Tensor2D };
  dispose(): void;
}

/** The record of an extractor that a result carries. */
export function extractorRecord(e: ExtractorInfo): ExtractorInfo {
  return {
    name: e.name,
    distanceName: e.distanceName,
    weightsSha256: e.weightsSha256,
    featureDim: e.featureDim,
    classes: e.classes,
    input: e.input,
    preprocessing: e.preprocessing,
  };
}
