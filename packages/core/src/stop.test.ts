import { stopReasonOf } from './stop';

it('reads a stop reason as it arrives: shutdown exactly, anything else a cancel', () => {
  expect(stopReasonOf('shutdown')).toBe('shutdown');
  expect(stopReasonOf(new Error('shutdown'))).toBe('shutdown');
  for (const other of [
    'cancel',
    new Error('cancel'),
    'Shutdown',
    'shutdown ',
    undefined,
    null,
    1,
    { reason: 'shutdown' },
  ])
    expect(stopReasonOf(other)).toBe('cancel');
});
