import { AppError, ConflictError, UnavailableError, ValidationError } from '../../errors';

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Quotes a schema name after checking it against a strict pattern (identifiers cannot be parameters). */
export function quoteIdent(name: string): string {
  if (!IDENTIFIER.test(name)) {
    throw new ValidationError(`"${name}" is not a valid schema name`, { name }, 'invalid_schema');
  }
  return `"${name}"`;
}

interface DriverError {
  code?: string;
  message?: string;
  constraint?: string;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'EAI_AGAIN',
]);

/**
 * Whether a driver error means the server cannot be reached or dropped the connection (so a retry
 * later may work): socket errors, pg's own connection messages, SQLSTATE class 08, shutdowns, and
 * "too many connections".
 */
export function isConnectionError(error: unknown): boolean {
  // Duck-typed: socket errors may come from another realm (jest's VM contexts), where instanceof fails.
  if (typeof error !== 'object' || error === null) return false;
  const nested = (error as { errors?: unknown }).errors;
  if (Array.isArray(nested) && nested.some(isConnectionError)) return true;
  const { code, message = '' } = error as DriverError;
  if (code && NETWORK_CODES.has(code)) return true;
  if (code && (code.startsWith('08') || ['57P01', '57P02', '57P03', '53300'].includes(code))) return true;
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connection timeout/i.test(
    message,
  );
}

/** A driver error's message; Node reports a refused dual-stack connect as an AggregateError with none. */
export function errorMessage(error: unknown): string {
  if (typeof error !== 'object' || error === null) return String(error);
  const { message, errors } = error as { message?: unknown; errors?: unknown };
  if (!message && Array.isArray(errors)) return errors.map(errorMessage).join('; ');
  return typeof message === 'string' ? message : String(error);
}

/** Translates a `pg` failure into the service's errors; AppErrors pass through unchanged. */
export function toStoreError(error: unknown, operation: string): AppError {
  if (error instanceof AppError) return error;
  const driver = (error ?? {}) as DriverError;
  const message = errorMessage(error);
  if (isConnectionError(error)) {
    return new UnavailableError(`PostgreSQL is unavailable (${operation}): ${message}`, {
      cause: error,
      code: 'backend_unavailable',
      details: { backend: 'postgres', operation },
    });
  }
  if (driver.code === '23505') {
    return new ConflictError(
      `${operation} conflicts with an existing row`,
      { constraint: driver.constraint },
      'storage_conflict',
    );
  }
  // Class 22: data exceptions (NUL bytes in text, invalid vector or JSON values): the input is at fault.
  if (driver.code?.startsWith('22')) {
    return new ValidationError(
      `PostgreSQL rejected the data (${operation}): ${message}`,
      { sqlstate: driver.code },
      'invalid_data',
    );
  }
  // Class 40 (deadlock, serialization failure) and 57014 (statement cancelled or timed out) pass:
  // the same call can succeed when retried.
  if (driver.code?.startsWith('40') || driver.code === '57014') {
    return new UnavailableError(`PostgreSQL ${operation} failed transiently: ${message}`, {
      cause: error,
      code: 'backend_busy',
      details: { backend: 'postgres', operation, sqlstate: driver.code },
    });
  }
  return new AppError(
    'storage_error',
    `PostgreSQL ${operation} failed: ${message}`,
    500,
    { sqlstate: driver.code },
    { cause: error },
  );
}
