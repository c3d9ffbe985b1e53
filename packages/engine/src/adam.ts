/**
 * Adam (Kingma & Ba 2015) as TensorFlow 1's AdamOptimizer, which the official code used:
 * lr_t = lr · √(1 − β2^t) / (1 − β1^t), θ ← θ − lr_t · m / (√v + ε). The moments are variables we
 * own, so checkpoints store them exactly and a resumed run continues bit for bit; the step count
 * and bias corrections are computed in float64 on the host.
 */
import { fusedOptimizerStep, fusedOptimizerStepAvailable } from '@ddpm/kernels';
import { decodeSafetensors, encodeSafetensors } from '@ddpm/safetensors';
import { type UNet, checkAgainst, readNamed } from '@ddpm/unet';
import * as tf from '@tensorflow/tfjs-core';

export interface AdamHyper {
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
}

export class Adam {
  readonly m: tf.Variable[];
  readonly v: tf.Variable[];
  /** Updates applied so far (t of the bias correction). */
  step = 0;

  constructor(
    readonly params: readonly tf.Variable[],
    readonly hyper: AdamHyper,
  ) {
    // tidy frees the zeros each variable was made from (a variable keeps its own reference).
    this.m = params.map((p) => tf.tidy(() => tf.variable(tf.zerosLike(p), false)));
    this.v = params.map((p) => tf.tidy(() => tf.variable(tf.zerosLike(p), false)));
  }

  /** One update with gradients aligned with `params`, at learning rate `lr`. */
  apply(grads: readonly tf.Tensor[], lr: number): void {
    const { beta1, beta2, epsilon } = this.hyper;
    this.step += 1;
    const t = this.step;
    const lrT = (lr * Math.sqrt(1 - beta2 ** t)) / (1 - beta1 ** t);
    this.params.forEach((p, i) => {
      tf.tidy(() => {
        const g = grads[i]!;
        const m = tf.add(tf.mul(this.m[i]!, beta1), tf.mul(g, 1 - beta1));
        const v = tf.add(tf.mul(this.v[i]!, beta2), tf.mul(tf.square(g), 1 - beta2));
        this.m[i]!.assign(m);
        this.v[i]!.assign(v);
        p.assign(tf.sub(p, tf.mul(tf.div(m, tf.add(tf.sqrt(v), epsilon)), lrT)));
      });
    });
  }

  /**
   * The same step on gradients clipped by `scale`, followed by the EMA update with `decay`, in one
   * kernel per variable (our wasm kernel: the same float32 operations as clipping, {@link apply}
   * and updateEma, so the same bits). `grads`: one tensor per variable, or one tensor holding them
   * all in the variables' order. Returns false, changing nothing, where that kernel is not
   * available (other backends): the caller then composes them.
   */
  applyFusedWithEma(
    grads: readonly tf.Tensor[] | tf.Tensor,
    lr: number,
    scale: number,
    ema: readonly tf.Variable[],
    decay: number,
  ): boolean {
    if (!fusedOptimizerStepAvailable()) return false;
    const { beta1, beta2, epsilon } = this.hyper;
    const flat = Array.isArray(grads) ? undefined : (grads as tf.Tensor);
    const total = this.params.reduce((n, p) => n + p.size, 0);
    if (flat !== undefined && flat.size !== total)
      throw new Error(`internal error: ${flat.size} gradient values for ${total} parameters`);
    this.step += 1;
    const t = this.step;
    const lrT = (lr * Math.sqrt(1 - beta2 ** t)) / (1 - beta1 ** t);
    let offset = 0;
    this.params.forEach((p, i) => {
      const g = flat !== undefined ? { g: flat, gOffset: offset } : { g: (grads as readonly tf.Tensor[])[i]! };
      offset += p.size;
      const out = fusedOptimizerStep(
        { p, ...g, m: this.m[i]!, v: this.v[i]!, ema: ema[i]! },
        { scale, beta1, beta2, epsilon, lrT, decay },
      );
      p.assign(out.p);
      this.m[i]!.assign(out.m);
      this.v[i]!.assign(out.v);
      ema[i]!.assign(out.ema);
      tf.dispose([out.p, out.m, out.v, out.ema]);
    });
    return true;
  }

  dispose(): void {
    tf.dispose([...this.m, ...this.v]);
  }
}

/**
 * The learning rate for the update made after `step` earlier updates: linear warm-up as the
 * official code, lr · min(step / warmupSteps, 1) (so the very first update has rate 0).
 */
export function learningRateAt(step: number, lr: number, warmupSteps: number): number {
  return warmupSteps > 0 ? lr * Math.min(1, step / warmupSteps) : lr;
}

/**
 * The moments as safetensors (`m/<param>`, `v/<param>` under the network's official names), so a
 * checkpoint resumes the optimizer exactly.
 */
export async function saveAdam(adam: Adam, unet: UNet): Promise<Uint8Array> {
  const names = unet.namedVariables.map(([name]) => name);
  const m = await readNamed(adam.m.map((t, i) => [`m/${names[i]}`, t] as [string, tf.Tensor]));
  const v = await readNamed(adam.v.map((t, i) => [`v/${names[i]}`, t] as [string, tf.Tensor]));
  return encodeSafetensors([...m, ...v], { format: 'ddpm-adam/1', step: String(adam.step) });
}

/** Restores moments written by {@link saveAdam}; every name and shape is checked before anything is assigned. */
export function loadAdam(adam: Adam, unet: UNet, bytes: Uint8Array): void {
  const { tensors } = decodeSafetensors(bytes);
  const slots = (['m', 'v'] as const).map((which) => {
    const prefix = `${which}/`;
    const arrays = tensors
      .filter((t) => t.name.startsWith(prefix))
      .map((t) => ({ ...t, name: t.name.slice(prefix.length) }));
    return { variables: which === 'm' ? adam.m : adam.v, byName: checkAgainst(unet, arrays) };
  });
  tf.tidy(() => {
    for (const { variables, byName } of slots) {
      unet.namedVariables.forEach(([name], i) => {
        const a = byName.get(name)!;
        variables[i]!.assign(tf.tensor(a.data, [...a.shape], 'float32'));
      });
    }
  });
}
