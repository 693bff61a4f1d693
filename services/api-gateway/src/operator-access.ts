import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import { AppError } from 'memory-core';

/**
 * Who may use the operator's surface: Bull Board, migrations and their jobs. These act on every user's
 * data at once (a Chroma collection holds all users' memories; a queue holds all users' jobs), so the
 * user a request otherwise acts as (`DEFAULT_USER_ID`) is not enough.
 *
 * - With `ADMIN_PASSWORD` set: HTTP basic auth as `ADMIN_USER` with that password, from anywhere.
 * - Without it: requests from this machine only (a loopback peer), whose users can reach Redis and
 *   the databases anyway.
 */
export interface OperatorAccess {
  user: string;
  password?: string;
}

/** Refused operator access: 401 asks for credentials, 403 says how to get access. */
export class OperatorOnlyError extends AppError {
  constructor(
    message: string,
    httpStatus: 401 | 403,
    readonly challenge: boolean,
  ) {
    super('operator_only', message, httpStatus);
  }
}

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3})$/;

/** Equal strings, compared in constant time: as digests, so that neither length shows either. */
function sameSecret(given: string, expected: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** The user and password of a `Basic` Authorization header, when it is one. */
function basicCredentials(header: string | undefined): { user: string; password: string } | undefined {
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** Why `req` may not use the operator's surface, or `undefined` when it may. */
export function operatorRefusal(access: OperatorAccess, req: Request): OperatorOnlyError | undefined {
  if (access.password !== undefined) {
    const given = basicCredentials(req.headers.authorization);
    const ok =
      given !== undefined &&
      // Both compared, so that a wrong user name costs as long as a wrong password.
      [sameSecret(given.user, access.user), sameSecret(given.password, access.password)].every(Boolean);
    return ok
      ? undefined
      : new OperatorOnlyError(
          'operator credentials required (HTTP basic auth, ADMIN_USER and ADMIN_PASSWORD)',
          401,
          true,
        );
  }
  return LOOPBACK.test(req.socket.remoteAddress ?? '')
    ? undefined
    : new OperatorOnlyError(
        'operators only: from this machine, or from anywhere once ADMIN_PASSWORD is set (HTTP basic auth)',
        403,
        false,
      );
}

/** Express middleware refusing requests that are not an operator's. */
export function operatorOnly(access: OperatorAccess): RequestHandler {
  return (req, res, next) => {
    const refusal = operatorRefusal(access, req);
    if (refusal?.challenge)
      res.setHeader('WWW-Authenticate', 'Basic realm="memory-service operators", charset="UTF-8"');
    next(refusal);
  };
}
