import { randomUUID } from 'node:crypto';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { AppError, isAppError, ValidationError } from '../errors';
import type { Logger } from '../logging';

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

/** Takes the caller's `X-Request-Id` when it is sane, else makes one; echoes it on the response. */
export function requestId(): RequestHandler {
  return (req, res, next) => {
    const given = req.get('x-request-id');
    const id = given && REQUEST_ID.test(given) ? given : randomUUID();
    res.locals.requestId = id;
    res.set('X-Request-Id', id);
    next();
  };
}

/** Bodies must be JSON: anything else is a 415 before it reaches a route. */
export function requireJson(): RequestHandler {
  return (req, _res, next) => {
    const hasBody = Number(req.get('content-length') ?? 0) > 0 || req.get('transfer-encoding') !== undefined;
    if (hasBody && !req.is('application/json')) {
      next(
        new ValidationError(
          'the request body must be JSON (Content-Type: application/json)',
          undefined,
          'unsupported_media_type',
          415,
        ),
      );
      return;
    }
    next();
  };
}

/** Whether `body` is valid JSON that body-parser's strict mode refused: `null`, a number, string or boolean. */
function isJsonScalar(body: unknown): boolean {
  if (typeof body !== 'string') return false;
  try {
    const value: unknown = JSON.parse(body);
    return value === null || typeof value !== 'object';
  } catch {
    return false;
  }
}

/** Errors that body-parser raises, mapped to what the client did wrong. */
function fromBodyParser(error: {
  type?: string;
  status?: number;
  message?: string;
  body?: unknown;
  limit?: number;
  length?: number;
}): AppError | undefined {
  switch (error.type) {
    case 'entity.parse.failed':
      return isJsonScalar(error.body)
        ? new ValidationError(
            'the request body must be a JSON object or array',
            undefined,
            'validation_failed',
          )
        : new ValidationError('the request body is not valid JSON', undefined, 'malformed_json');
    case 'entity.too.large': {
      const limit = error.limit ?? 0;
      const size = error.length === undefined ? '' : ` (${error.length} bytes)`;
      // The gateway's limit is BODY_LIMIT; a batch that is valid memory by memory can still exceed it.
      return new ValidationError(
        `the request body is too large${size}: at most ${limit} bytes; send a large batch in smaller ones`,
        { limit_bytes: limit, ...(error.length === undefined ? {} : { length_bytes: error.length }) },
        'payload_too_large',
        413,
      );
    }
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new ValidationError('unsupported body encoding', undefined, 'unsupported_media_type', 415);
    case 'request.aborted':
      return new ValidationError('the request was aborted', undefined, 'request_aborted');
    default:
      // Express and body-parser mark client errors (e.g. a malformed %-escape in the path) with a 4xx status.
      return typeof error.status === 'number' && error.status >= 400 && error.status < 500
        ? new ValidationError(error.message ?? 'bad request', undefined, 'bad_request', error.status)
        : undefined;
  }
}

/**
 * The one error handler of a service: `AppError` → its status and `{error: {code, message, details}}`;
 * anything else → 500 with the request id and no internals.
 */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (error: unknown, req, res, _next) => {
    const requestIdValue = String(res.locals.requestId ?? '');
    const known = isAppError(error)
      ? error
      : fromBodyParser(error as { type?: string; status?: number; message?: string });
    if (known) {
      const level = known.httpStatus >= 500 ? 'warn' : 'debug';
      logger[level](
        { requestId: requestIdValue, code: known.code, status: known.httpStatus, path: req.path },
        'request failed',
      );
      res.status(known.httpStatus).json({ error: known.toJSON() });
      return;
    }
    logger.error({ requestId: requestIdValue, err: error, path: req.path }, 'unexpected error');
    res.status(500).json({
      error: { code: 'internal_error', message: 'internal error', details: { request_id: requestIdValue } },
    });
  };
}

/** 405 for a path that exists, asked with a method it does not take: registered after its routes. */
export function methodNotAllowed(allowed: string[]): RequestHandler {
  return (req, res) => {
    res
      .status(405)
      .set('Allow', allowed.join(', '))
      .json({
        error: {
          code: 'method_not_allowed',
          message: `${req.method} is not allowed on ${req.baseUrl}${req.path}; use ${allowed.join(' or ')}`,
        },
      });
  };
}

/** 404 for routes that do not exist, in the same JSON shape. */
export function notFoundRoute(): RequestHandler {
  return (req, res) => {
    res
      .status(404)
      .json({ error: { code: 'route_not_found', message: `no route for ${req.method} ${req.path}` } });
  };
}
