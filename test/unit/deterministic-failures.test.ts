import fc from 'fast-check';
import { DatabaseError } from 'pg';
import type { ActivityExecuteInput } from '@temporalio/worker';
import { deterministicPgError } from '../../shared/db';
import { deterministicFailuresInterceptor } from '../../worker/deterministic-failures';

/** An error as node-postgres raises it for an ErrorResponse with this SQLSTATE. */
function pgError(code: string, message = `refused (${code})`): DatabaseError {
  const err = new DatabaseError(message, message.length, 'error');
  err.code = code;
  return err;
}

const tail = fc.stringMatching(/^[0-9A-Z]{3}$/);
const sqlstate = (classes: string[]) => fc.tuple(fc.constantFrom(...classes), tail).map(([c, t]) => c + t);
const DETERMINISTIC = ['22', '54'];
// Integrity, rollback, syntax or undefined object (a schema a rolling upgrade has not migrated yet), resources,
// operator intervention and connection: a later attempt may pass.
const RETRYABLE = ['23', '40', '42', '53', '57', '08'];

describe('deterministicPgError', () => {
  it('names every SQLSTATE of classes 22 and 54, with its class and Postgres message', () => {
    fc.assert(
      fc.property(sqlstate(DETERMINISTIC), fc.string({ minLength: 1 }), (code, message) => {
        expect(deterministicPgError(pgError(code, message))).toEqual({
          sqlstate: code,
          kind: code.startsWith('22') ? 'data_exception' : 'program_limit_exceeded',
          message,
        });
      }),
    );
  });

  it('leaves integrity, rollback, syntax, resource, operator and connection classes to retries', () => {
    fc.assert(fc.property(sqlstate(RETRYABLE), (code) => expect(deterministicPgError(pgError(code))).toBeUndefined()));
  });

  it('finds a deterministic error as the cause of another one, but not under a retryable SQLSTATE', () => {
    fc.assert(
      fc.property(sqlstate(DETERMINISTIC), sqlstate(RETRYABLE), (code, retryable) => {
        expect(deterministicPgError(new Error('page failed', { cause: pgError(code) }))?.sqlstate).toBe(code);
        const outer = Object.assign(pgError(retryable), { cause: pgError(code) });
        expect(deterministicPgError(outer)).toBeUndefined();
      }),
    );
  });

  it('answers no for errors that are not Postgres errors', () => {
    const notPg = fc.oneof(
      fc.string().map((m) => new Error(m)),
      fc
        .constantFrom('ECONNRESET', 'ECONNREFUSED', 'ERR_STREAM_DESTROYED', 'ENOENT', '22', '5400', '540011', '22p02')
        .map((code) => Object.assign(new Error('socket'), { code })),
      fc.anything().filter((x) => !(x !== null && typeof x === 'object' && ('code' in x || 'cause' in x))),
    );
    fc.assert(fc.property(notPg, (err) => expect(deterministicPgError(err)).toBeUndefined()));
  });
});

describe('the activity interceptor', () => {
  const execute = (next: () => Promise<unknown>) => {
    const { inbound } = deterministicFailuresInterceptor({} as never);
    const input: ActivityExecuteInput = { args: [], headers: {} };
    return inbound!.execute!(input, next);
  };

  it('makes a deterministic Postgres error a non-retryable UnprocessableData failure naming it', async () => {
    await fc.assert(
      fc.asyncProperty(sqlstate(DETERMINISTIC), async (code) => {
        const thrown = pgError(code, 'stack depth limit exceeded');
        const failure = await execute(() => Promise.reject(thrown)).catch((err: unknown) => err);
        expect(failure).toMatchObject({
          name: 'ApplicationFailure',
          type: 'UnprocessableData',
          nonRetryable: true,
          cause: thrown,
        });
        expect((failure as Error).message).toContain(`stack depth limit exceeded (SQLSTATE ${code}`);
      }),
    );
  });

  it('passes every other error through unchanged, to be retried', async () => {
    await fc.assert(
      fc.asyncProperty(sqlstate(RETRYABLE), async (code) => {
        const thrown = pgError(code);
        await expect(execute(() => Promise.reject(thrown))).rejects.toBe(thrown);
      }),
    );
    const socket = Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' });
    await expect(execute(() => Promise.reject(socket))).rejects.toBe(socket);
  });

  it('returns what the activity returns', async () => {
    await expect(execute(() => Promise.resolve({ published: 3 }))).resolves.toEqual({ published: 3 });
  });
});
