import type { Request } from 'express';
import { operatorRefusal } from './operator-access';

const request = (remoteAddress: string, authorization?: string) =>
  ({ socket: { remoteAddress }, headers: { authorization } }) as unknown as Request;
const basic = (credentials: string) => `Basic ${Buffer.from(credentials).toString('base64')}`;

describe('operatorRefusal', () => {
  describe('without ADMIN_PASSWORD: this machine only', () => {
    const access = { user: 'admin' };

    it.each(['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1'])('lets %s in', (address) => {
      expect(operatorRefusal(access, request(address))).toBeUndefined();
    });

    it.each(['10.0.0.5', '172.17.0.1', '::ffff:10.0.0.5', 'fe80::1', '', '128.0.0.1'])(
      'refuses %p with 403 operator_only and no challenge',
      (address) => {
        expect(operatorRefusal(access, request(address))).toMatchObject({
          code: 'operator_only',
          httpStatus: 403,
          challenge: false,
        });
      },
    );
  });

  describe('with ADMIN_PASSWORD: basic auth, from anywhere', () => {
    const access = { user: 'ops', password: 'correct horse battery' };

    it('lets the operator in from another machine', () => {
      expect(
        operatorRefusal(access, request('10.0.0.5', basic('ops:correct horse battery'))),
      ).toBeUndefined();
    });

    it('keeps a password holding ":" whole', () => {
      const colon = { user: 'ops', password: 'with:colon:inside' };
      expect(operatorRefusal(colon, request('10.0.0.5', basic('ops:with:colon:inside')))).toBeUndefined();
    });

    it.each([
      ['no header', undefined],
      ['a wrong password', basic('ops:correct horse batterz')],
      ['a wrong user', basic('admin:correct horse battery')],
      ['a longer password', basic('ops:correct horse battery!')],
      ['no colon', basic('opscorrect horse battery')],
      ['a bearer token', 'Bearer correct horse battery'],
    ])('asks for credentials (401 with a challenge) on %s, even from this machine', (_, header) => {
      expect(operatorRefusal(access, request('127.0.0.1', header))).toMatchObject({
        code: 'operator_only',
        httpStatus: 401,
        challenge: true,
      });
    });
  });
});
