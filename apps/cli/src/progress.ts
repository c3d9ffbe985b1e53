/**
 * A progress line for long work: a bar, rate, ETA and extra fields, redrawn in place on a TTY and
 * printed every few seconds otherwise (so logs stay readable).
 */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}

/** A progress callback `(done, total)` that creates its bar on the first call and finishes it at the end. */
export function lazyProgress(
  label: string,
  write: (text: string) => void,
  tty: boolean,
): (done: number, total: number) => void {
  let bar: ProgressBar | undefined;
  return (done, total) => {
    bar ??= new ProgressBar(label, total, write, tty);
    bar.update(done);
    if (done === total) bar.finish();
  };
}

export class ProgressBar {
  private readonly started = Date.now();
  private lastPrint = 0;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly write: (text: string) => void,
    private readonly tty: boolean,
    private readonly startAt = 0,
    /** How `done` and `total` are printed (a count by default; `formatDuration` for seconds). */
    private readonly unit: (value: number) => string = String,
  ) {}

  update(done: number, fields: Record<string, string> = {}, force = false): void {
    const now = Date.now();
    if (!force && !this.tty && now - this.lastPrint < 5000 && done < this.total) return;
    if (!force && this.tty && now - this.lastPrint < 100 && done < this.total) return;
    this.lastPrint = now;
    const fraction = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const width = 24;
    const filled = Math.round(fraction * width);
    const bar = '='.repeat(Math.max(0, filled - 1)) + (filled > 0 ? '>' : '') + ' '.repeat(width - filled);
    const elapsed = (now - this.started) / 1000;
    const rate = (done - this.startAt) / Math.max(elapsed, 1e-9);
    const eta = rate > 0 ? (this.total - done) / rate : Number.NaN;
    const extra = Object.entries(fields)
      .map(([k, v]) => `${k} ${v}`)
      .join(' | ');
    const line = `${this.label} ${this.unit(done)}/${this.unit(this.total)} [${bar}] ${(fraction * 100).toFixed(0).padStart(3)}% | ETA ${formatDuration(eta)}${extra ? ` | ${extra}` : ''}`;
    this.write(this.tty ? `\r${line}\x1b[K` : `${line}\n`);
  }

  finish(): void {
    if (this.tty) this.write('\n');
  }
}
