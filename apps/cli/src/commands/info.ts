/** `ddpm info unet`: parameters, FLOPs and levels of a U-Net preset, without building it. */
import { PRESET_NAMES, describeArchitecture, preset } from '@ddpm/unet';

import { parseChoice, parseCommandArgs } from '../args';
import { type CliIo, CliUsageError } from '../cli-io';
import { renderTable } from '../table';

export const INFO_USAGE = `Usage: ddpm info unet --preset NAME [--json]

Prints the parameter count (total and per block), the forward FLOPs per image (convolutions and
dense layers; attention einsums separately) and each resolution with its channel count.

  --preset   ${PRESET_NAMES.join(' | ')}
  --json     machine-readable output
`;

export function infoCommand(argv: readonly string[], io: CliIo): number {
  const { values, positionals } = parseCommandArgs(argv, {
    preset: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (positionals[0] !== 'unet' || positionals.length !== 1) {
    throw new CliUsageError(`expected "ddpm info unet", got "ddpm info ${positionals.join(' ')}"`);
  }
  if (values['preset'] === undefined) throw new CliUsageError('--preset is required');
  const name = parseChoice('preset', values['preset'], PRESET_NAMES, PRESET_NAMES[0]!);
  const s = describeArchitecture(preset(name));
  const report = {
    preset: name,
    config: s.config,
    totalParams: s.totalParams,
    forwardFlopsPerImage: s.forwardFlopsConvDense,
    forwardFlopsAttentionPerImage: s.forwardFlopsAttention,
    trainingFlopsPerImage: 3 * s.forwardFlopsConvDense,
    levels: s.levels,
    paramsByBlock: s.paramsByBlock,
  };
  if (values['json'] === true) {
    io.stdout(JSON.stringify(report, null, 2) + '\n');
    return 0;
  }
  const c = s.config;
  io.stdout(
    `U-Net preset ${name}: ${c.imageSize}x${c.imageSize}x${c.inChannels} -> ${c.outChannels} channels, ch ${c.ch}, ` +
      `ch_mult ${c.chMult.join(',')}, ${c.numResBlocks} res blocks, attention at ${c.attnResolutions.join(',') || 'none'}, dropout ${c.dropout}\n`,
  );
  io.stdout(`parameters: ${s.totalParams.toLocaleString('en-US')}\n`);
  io.stdout(
    `forward FLOPs per image: ${(s.forwardFlopsConvDense / 1e9).toFixed(3)} GFLOP (conv + dense), ` +
      `${(s.forwardFlopsAttention / 1e9).toFixed(3)} GFLOP (attention einsums)\n\n`,
  );
  io.stdout(
    renderTable(
      ['resolution', 'channels', 'attention'],
      s.levels.map((l) => [`${l.resolution}x${l.resolution}`, String(l.channels), l.attention ? 'yes' : '']),
    ),
  );
  io.stdout('\n');
  io.stdout(
    renderTable(
      ['block', 'parameters'],
      s.paramsByBlock.map((b) => [b.block, b.params.toLocaleString('en-US')]),
    ),
  );
  return 0;
}
