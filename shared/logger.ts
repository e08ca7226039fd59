import pino from 'pino';

export type Logger = pino.Logger;

/** Structured JSON logs on stdout; `component` tells ingest, worker and api lines apart. */
export function createLogger(level: string, component?: string): Logger {
  return pino({
    level,
    base: { service: 'crm-events-sink', ...(component ? { component } : {}) },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
