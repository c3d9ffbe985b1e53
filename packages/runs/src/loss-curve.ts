/**
 * The training loss over a run, kept in every checkpoint (its `state.json`), so that a resumed run
 * continues the very curve it left and a run's curve does not depend on its restarts. A point is
 * the mean loss of `every` consecutive steps; `every` starts at 1 and doubles, pairing neighbours,
 * whenever the curve reaches {@link MAX_POINTS} points, so a run of any length keeps between
 * MAX_POINTS / 2 and MAX_POINTS of them. Tensor-free: the API reads it (`@ddpm/runs`).
 */

/** Most points a curve keeps. */
export const MAX_POINTS = 1000;

/** A point: the steps up to `step` since the previous point, their summed mean losses and count. */
export interface LossSpan {
  readonly step: number;
  readonly sum: number;
  readonly count: number;
}

export interface LossCurveState {
  /** Steps per point. */
  readonly every: number;
  readonly spans: readonly LossSpan[];
  /** The steps since the last point (fewer than `every`). */
  readonly pending?: LossSpan;
}

/** A point as clients see it: the mean loss of the steps up to `step` since the previous point. */
export interface LossPoint {
  readonly step: number;
  readonly loss: number;
  /** Steps averaged. */
  readonly steps: number;
}

export class LossCurve {
  private constructor(
    private every: number,
    private spans: LossSpan[],
    private pending: LossSpan | undefined,
  ) {}

  static empty(): LossCurve {
    return new LossCurve(1, [], undefined);
  }

  /** The curve a checkpoint kept (a run checkpointed before curves were kept starts an empty one). */
  static restore(state: LossCurveState | undefined): LossCurve {
    if (state === undefined) return LossCurve.empty();
    return new LossCurve(state.every, [...state.spans], state.pending);
  }

  /** Adds the mean loss of optimizer step `step`. */
  add(step: number, loss: number): void {
    const p = this.pending;
    const span = { step, sum: (p?.sum ?? 0) + loss, count: (p?.count ?? 0) + 1 };
    if (span.count < this.every) {
      this.pending = span;
      return;
    }
    this.pending = undefined;
    this.spans.push(span);
    if (this.spans.length >= MAX_POINTS) {
      const paired: LossSpan[] = [];
      for (let i = 0; i + 1 < this.spans.length; i += 2) {
        const [a, b] = [this.spans[i]!, this.spans[i + 1]!];
        paired.push({ step: b.step, sum: a.sum + b.sum, count: a.count + b.count });
      }
      this.spans = paired;
      this.every *= 2;
    }
  }

  state(): LossCurveState {
    return { every: this.every, spans: [...this.spans], ...(this.pending ? { pending: this.pending } : {}) };
  }
}

/** The points of a curve, the steps since its last point included as a last (shorter) one. */
export function lossPoints(state: LossCurveState): LossPoint[] {
  return [...state.spans, ...(state.pending ? [state.pending] : [])].map((s) => ({
    step: s.step,
    loss: s.sum / s.count,
    steps: s.count,
  }));
}
