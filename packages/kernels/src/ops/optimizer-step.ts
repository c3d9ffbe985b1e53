/**
 * The optimizer's element-wise step as one kernel on wasm (c/ddpm_kernels.c adam_ema_step):
 * gradient clipping's scale, Adam's moments and update, and the EMA after it, in one pass per
 * parameter tensor, where the composed tfjs ops run ~12 kernels with their temporaries (a
 * noticeable share of a small model's step, which every rank of a group pays in full). It does the same float32 operations in
 * the same order, so the results are the same bits (tested against the composed ops).
 */
import type * as tf from '@tensorflow/tfjs-core';

import { wasmKernels } from './wasm-kernels';

export interface OptimizerStepTensors {
  readonly p: tf.Tensor;
  readonly g: tf.Tensor;
  readonly m: tf.Tensor;
  readonly v: tf.Tensor;
  readonly ema: tf.Tensor;
  /**
   * Where p's gradient starts in `g`, in values (default 0): `g` may hold every parameter's
   * gradient one after the other, as a data-parallel group's sum arrives.
   */
  readonly gOffset?: number;
}

export interface OptimizerStepConstants {
  /** The gradient's clipping factor (1: none). */
  readonly scale: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  /** The bias-corrected learning rate lr·√(1 − β2ᵗ)/(1 − β1ᵗ). */
  readonly lrT: number;
  /** The EMA's decay at this step. */
  readonly decay: number;
}

/** Whether {@link fusedOptimizerStep} runs here (wasm with our kernels). */
export function fusedOptimizerStepAvailable(): boolean {
  return wasmKernels() !== undefined;
}

/**
 * g' = g·scale, m' = β1·m + (1 − β1)·g', v' = β2·v + (1 − β2)·g'², p' = p − lr_t·m'/(√v' + ε),
 * ema' = d·ema + (1 − d)·p': new tensors (the caller assigns and disposes them).
 */
export function fusedOptimizerStep(
  tensors: OptimizerStepTensors,
  constants: OptimizerStepConstants,
): { p: tf.Tensor; m: tf.Tensor; v: tf.Tensor; ema: tf.Tensor } {
  const kernels = wasmKernels();
  if (kernels === undefined) throw new Error('internal error: the fused optimizer step needs our wasm kernels');
  const { p, g, m, v, ema } = tensors;
  for (const t of [p, m, v, ema]) {
    if (t.dtype !== 'float32' || t.size !== p.size)
      throw new Error('internal error: optimizer step tensors must be float32 of one size');
  }
  const gOffset = tensors.gOffset ?? 0;
  if (g.dtype !== 'float32' || !Number.isInteger(gOffset) || gOffset < 0 || gOffset + p.size > g.size) {
    throw new Error(`internal error: the gradient (${g.size} values from ${gOffset}) does not cover ${p.size} values`);
  }
  return kernels.adamEmaStep(tensors, constants);
}
