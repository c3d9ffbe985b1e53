/**
 * tfjs-core's CommonJS build registers no gradient functions (its ESM `register_all_gradients`
 * module cannot be required from Node). tfjs-layers' CommonJS build registers all of them into
 * tfjs-core's global registry on load, so we load it for that side effect only.
 */
import '@tensorflow/tfjs-layers';
import * as tf from '@tensorflow/tfjs-core';

/** Throws if the gradient registry is empty (e.g. a second, unregistered copy of tfjs-core). */
export function assertGradientsRegistered(): void {
  for (const kernel of ['Conv2D', 'BatchMatMul', 'Mean', 'Sigmoid']) {
    if (tf.getGradient(kernel) === undefined) {
      throw new Error(`no gradient is registered for ${kernel}: is a second copy of @tensorflow/tfjs-core installed?`);
    }
  }
}
