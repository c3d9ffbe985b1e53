/** How numbers and times read in the console. */

export function duration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '';
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export function time(iso: string | undefined): string {
  if (iso === undefined) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleString();
}

/** "step / total" with the rate and the time left, for a running job. */
export function progressText(
  p: { step: number; totalSteps: number; imagesPerSecond?: number; etaSeconds?: number } | undefined,
): string {
  if (!p) return '';
  const parts = [`${p.step} / ${p.totalSteps}`];
  if (p.imagesPerSecond !== undefined) parts.push(`${p.imagesPerSecond.toFixed(1)} img/s`);
  if (p.etaSeconds !== undefined && p.etaSeconds > 0) parts.push(`${duration(p.etaSeconds)} left`);
  return parts.join(' · ');
}

/** A size in bytes as people read it (1024-based units, as `ls -h`). */
export function bytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}
