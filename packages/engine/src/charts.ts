/**
 * Line charts as PNG (an SVG drawn by sharp's librsvg): the metrics of a run over training, the
 * rate–distortion curve of Table 4. Axes with round-numbered ticks, one colour per series, a
 * legend. Text needs a font on the machine (Debian: fonts-dejavu-core); without one the lines
 * and axes are still drawn.
 */
import sharp from 'sharp';

import { engineError } from './errors';

export interface ChartSeries {
  readonly name: string;
  /** [x, y] pairs; non-finite values are skipped. */
  readonly points: readonly (readonly [number, number])[];
}

export interface LineChart {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly ChartSeries[];
  readonly width?: number;
  readonly height?: number;
}

const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

/** Round tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten, about `count` of them. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

const escape = (text: string): string =>
  text.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);

function tickText(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1e5 || a < 1e-3 ? v.toExponential(1) : String(Number(v.toPrecision(4)));
}

/** The chart as an SVG document. */
export function lineChartSvg(chart: LineChart): string {
  const width = chart.width ?? 720;
  const height = chart.height ?? 420;
  const margin = { left: 72, right: 160, top: 40, bottom: 52 };
  const points = chart.series.flatMap((s) => s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
  if (points.length === 0) throw engineError('DDPM_CONFIG_INVALID', `chart "${chart.title}" has no finite points`);
  let [xMin, xMax] = [Math.min(...points.map((p) => p[0])), Math.max(...points.map((p) => p[0]))];
  let [yMin, yMax] = [Math.min(...points.map((p) => p[1])), Math.max(...points.map((p) => p[1]))];
  if (xMax === xMin) [xMin, xMax] = [xMin - 1, xMax + 1];
  if (yMax === yMin)
    [yMin, yMax] = [yMin - Math.max(1, Math.abs(yMin) * 0.1), yMax + Math.max(1, Math.abs(yMax) * 0.1)];
  const pad = (yMax - yMin) * 0.05;
  yMin -= pad;
  yMax += pad;
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const sx = (x: number): number => margin.left + ((x - xMin) / (xMax - xMin)) * plotW;
  const sy = (y: number): number => margin.top + plotH - ((y - yMin) / (yMax - yMin)) * plotH;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans, sans-serif">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${margin.left}" y="24" font-size="15">${escape(chart.title)}</text>`,
  ];
  for (const t of niceTicks(xMin, xMax)) {
    const x = sx(t).toFixed(1);
    parts.push(`<line x1="${x}" y1="${margin.top}" x2="${x}" y2="${margin.top + plotH}" stroke="#eee"/>`);
    parts.push(
      `<text x="${x}" y="${margin.top + plotH + 18}" font-size="11" text-anchor="middle">${tickText(t)}</text>`,
    );
  }
  for (const t of niceTicks(yMin, yMax)) {
    const y = sy(t).toFixed(1);
    parts.push(`<line x1="${margin.left}" y1="${y}" x2="${margin.left + plotW}" y2="${y}" stroke="#eee"/>`);
    parts.push(
      `<text x="${margin.left - 6}" y="${(sy(t) + 4).toFixed(1)}" font-size="11" text-anchor="end">${tickText(t)}</text>`,
    );
  }
  parts.push(
    `<rect x="${margin.left}" y="${margin.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`,
  );
  parts.push(
    `<text x="${margin.left + plotW / 2}" y="${height - 12}" font-size="12" text-anchor="middle">${escape(chart.xLabel)}</text>`,
  );
  parts.push(
    `<text x="16" y="${margin.top + plotH / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 16 ${margin.top + plotH / 2})">${escape(chart.yLabel)}</text>`,
  );
  chart.series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length]!;
    const finite = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (finite.length > 1)
      parts.push(
        `<polyline fill="none" stroke="${colour}" stroke-width="2" points="${finite.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')}"/>`,
      );
    for (const [x, y] of finite)
      parts.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" fill="${colour}"/>`);
    const ly = margin.top + 10 + i * 18;
    parts.push(
      `<line x1="${margin.left + plotW + 12}" y1="${ly}" x2="${margin.left + plotW + 32}" y2="${ly}" stroke="${colour}" stroke-width="2"/>`,
    );
    parts.push(`<text x="${margin.left + plotW + 38}" y="${ly + 4}" font-size="11">${escape(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** The chart as PNG bytes. */
export async function lineChartPng(chart: LineChart): Promise<Uint8Array> {
  return new Uint8Array(
    await sharp(Buffer.from(lineChartSvg(chart)))
      .png()
      .toBuffer(),
  );
}
