import type { z } from 'zod';
import { ValidationError } from '../errors';

/** What a validation failure is called, chosen by the path of its first problem. */
export type IssueKind = (path: readonly PropertyKey[]) => { what: string; code: string };

/**
 * Parses input with a zod schema; failures become a 400 listing every problem with its path.
 * `what` names the input in the message; a function picks the name and error code from the first
 * problem's path (a migration's bad `mapping` is `invalid_mapping`, the rest `validation_failed`).
 */
export function validate<S extends z.ZodType>(
  schema: S,
  input: unknown,
  what: string | IssueKind = 'request',
): z.output<S> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((issue) => ({
    path: issue.path.map(String).join('.'),
    message: issue.message,
  }));
  const first = issues[0]!;
  const kind =
    typeof what === 'string' ? { what, code: 'validation_failed' } : what(parsed.error.issues[0]!.path);
  throw new ValidationError(
    `invalid ${kind.what}: ${first.path ? `${first.path}: ` : ''}${first.message}`,
    issues,
    kind.code,
  );
}
