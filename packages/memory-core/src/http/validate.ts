import type { z } from 'zod';
import { ValidationError } from '../errors';

/** Parses input with a zod schema; failures become a 400 listing every problem with its path. */
export function validate<S extends z.ZodType>(schema: S, input: unknown, what = 'request'): z.output<S> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((issue) => ({
    path: issue.path.map(String).join('.'),
    message: issue.message,
  }));
  const first = issues[0]!;
  throw new ValidationError(
    `invalid ${what}: ${first.path ? `${first.path}: ` : ''}${first.message}`,
    issues,
  );
}
