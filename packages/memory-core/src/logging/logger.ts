import pino, { type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

export interface LoggerSettings {
  /** Name of the service, written on every line. */
  service: string;
  /** @defaultValue `'info'` */
  level?: string;
  /** Human-readable output through pino-pretty (development only). @defaultValue `false` */
  pretty?: boolean;
}

/**
 * Creates the root pino logger of a process. Components take `logger.child({ module })`.
 * Memory content and vectors are never logged: the redaction list is a second line of defence.
 */
export function createLogger(settings: LoggerSettings): Logger {
  const options: LoggerOptions = {
    level: settings.level ?? 'info',
    base: { service: settings.service },
    redact: {
      paths: ['content', '*.content', 'embedding', '*.embedding', 'query', '*.query', 'vector'],
      censor: '[redacted]',
    },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (settings.pretty) {
    return pino({
      ...options,
      transport: {
        target: 'pino-pretty',
        options: { translateTime: 'SYS:HH:MM:ss', singleLine: true, ignore: 'pid,hostname,service' },
      },
    });
  }
  return pino(options);
}
