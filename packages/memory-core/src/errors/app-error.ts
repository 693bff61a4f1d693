/** Details attached to an error; serialised into the HTTP error body. */
export type ErrorDetails = Record<string, unknown> | unknown[];

/**
 * Base of every error the service raises on purpose. `code` is machine-readable and stable,
 * `httpStatus` is what an HTTP handler answers with.
 */
export class AppError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly httpStatus = 500,
    readonly details?: ErrorDetails,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }

  toJSON(): { code: string; message: string; details?: ErrorDetails } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

/** Input that breaks a rule of the API (400 unless a more precise status is given). */
export class ValidationError extends AppError {
  constructor(message: string, details?: ErrorDetails, code = 'validation_failed', httpStatus = 400) {
    super(code, message, httpStatus, details);
  }
}

export class NotFoundError extends AppError {
  constructor(message: string, details?: ErrorDetails, code = 'not_found') {
    super(code, message, 404, details);
  }
}

export class ConflictError extends AppError {
  constructor(message: string, details?: ErrorDetails, code = 'conflict') {
    super(code, message, 409, details);
  }
}

/** A dependency (database, queue, peer service) does not answer; callers may retry. */
export class UnavailableError extends AppError {
  constructor(message: string, options?: { cause?: unknown; details?: ErrorDetails; code?: string }) {
    super(options?.code ?? 'unavailable', message, 503, options?.details, { cause: options?.cause });
  }
}

/** What a Redis failure means to the caller: Redis as a store of state, or as the job queue. */
export const RedisDown = {
  state: { message: 'Redis does not answer', code: 'redis_unavailable' },
  queue: { message: 'the job queue (Redis) does not answer', code: 'queue_unavailable' },
} as const;

/** Runs a call to a dependency; any failure of it becomes a 503 `UnavailableError` saying `down`. */
export async function orUnavailable<T>(
  call: () => Promise<T>,
  down: { message: string; code: string },
): Promise<T> {
  try {
    return await call();
  } catch (cause) {
    throw new UnavailableError(down.message, { cause, code: down.code });
  }
}

export function isAppError(error: unknown): error is AppError {
  return error instanceof AppError;
}
