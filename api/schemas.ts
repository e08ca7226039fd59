import { Type, type Static } from '@sinclair/typebox';

/** The JSON body of every 4xx/5xx answer. */
export const ErrorBody = Type.Object(
  { statusCode: Type.Integer(), error: Type.String(), message: Type.String() },
  { $id: 'ErrorBody', additionalProperties: false },
);
export type ErrorBody = Static<typeof ErrorBody>;

export const errorResponses = {
  400: Type.Ref('ErrorBody'),
  500: Type.Ref('ErrorBody'),
} as const;

/** ISO-8601 timestamps: pg returns Date, the serializer writes toISOString(). */
export const Timestamp = Type.Unsafe<Date | string>({ type: 'string', format: 'date-time' });
export const NullableString = Type.Union([Type.String(), Type.Null()]);
export const NullableInteger = Type.Union([Type.Integer(), Type.Null()]);

/** A journal row without its payload, as listings show it. */
export const EventSummary = Type.Object({
  id: Type.Integer(),
  tenant_id: Type.String(),
  topic: Type.String(),
  received_at: Timestamp,
  replay_count: Type.Integer(),
  replay_source: NullableString,
});

/** Journal, DLQ and cursor ids: positive, and exact in JSON numbers (larger values never reach Postgres). */
export const Id = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER });

/** A string with a fixed set of values, as a plain JSON Schema enum (validation errors can then list the values). */
export const StringEnum = <const T extends readonly string[]>(values: T) =>
  Type.Unsafe<T[number]>({ type: 'string', enum: [...values] });
