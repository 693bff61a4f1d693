import { AppError, ConflictError, UnavailableError, ValidationError } from '../../errors';
import { quoteIdent, toStoreError } from './pg-errors';

const driverError = (props: Record<string, unknown>, message = 'driver failure') =>
  Object.assign(new Error(message), props);

describe('toStoreError', () => {
  it.each([
    ['a refused connection', driverError({ code: 'ECONNREFUSED' })],
    [
      'a refused dual-stack connection (AggregateError)',
      new AggregateError([driverError({ code: 'ECONNREFUSED' })]),
    ],
    ['a dropped connection', new Error('Connection terminated unexpectedly')],
    ['a connect timeout', new Error('timeout exceeded when trying to connect')],
    ['SQLSTATE 57P01 (admin shutdown)', driverError({ code: '57P01' })],
    ['SQLSTATE 08006 (connection failure)', driverError({ code: '08006' })],
  ])('maps %s to UnavailableError backend_unavailable', (_label, error) => {
    const translated = toStoreError(error, 'search');
    expect(translated).toBeInstanceOf(UnavailableError);
    expect(translated).toMatchObject({ code: 'backend_unavailable', httpStatus: 503 });
  });

  it('maps unique violations to ConflictError with the constraint', () => {
    const translated = toStoreError(
      driverError({ code: '23505', constraint: 'memories_dedup_key' }),
      'upsert',
    );
    expect(translated).toBeInstanceOf(ConflictError);
    expect(translated.details).toEqual({ constraint: 'memories_dedup_key' });
  });

  it('maps data exceptions (class 22) to ValidationError', () => {
    expect(toStoreError(driverError({ code: '22021' }), 'upsert')).toBeInstanceOf(ValidationError);
  });

  it('wraps anything else in AppError storage_error and keeps the cause', () => {
    const cause = driverError({ code: '42P01' }, 'relation "memories" does not exist');
    const translated = toStoreError(cause, 'list');
    expect(translated).toMatchObject({ code: 'storage_error', httpStatus: 500, cause });
    expect(translated).not.toBeInstanceOf(UnavailableError);
  });

  it('passes AppErrors through unchanged', () => {
    const own = new AppError('x', 'mine');
    expect(toStoreError(own, 'get')).toBe(own);
  });
});

describe('quoteIdent', () => {
  it('quotes a plain schema name and rejects anything else', () => {
    expect(quoteIdent('t_ab12')).toBe('"t_ab12"');
    expect(() => quoteIdent('a"; DROP SCHEMA public; --')).toThrow(ValidationError);
    expect(() => quoteIdent('')).toThrow(ValidationError);
  });
});
