/** pino loggers: JSON lines, object first then message; a child logger per job with its id. */
import pino, { type Logger } from 'pino';

export type { Logger } from 'pino';

export function createLogger(name: string, level: string = process.env['LOG_LEVEL'] ?? 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid, service: name } });
}
