import { Runtime, type LogLevel, type LogMetadata, type Logger as SdkLogger } from '@temporalio/worker';
import type { Logger } from '../shared/logger';

const LEVELS = { TRACE: 'trace', DEBUG: 'debug', INFO: 'info', WARN: 'warn', ERROR: 'error' } as const;

/** The Temporal SDK's own log lines (worker state, activity failures) as JSON lines of the service's logger. */
class SdkLogAdapter implements SdkLogger {
  constructor(private readonly target: Logger) {}
  log(level: LogLevel, message: string, meta?: LogMetadata) {
    this.target[LEVELS[level]]({ ...meta }, message);
  }
  trace = (message: string, meta?: LogMetadata) => this.log('TRACE', message, meta);
  debug = (message: string, meta?: LogMetadata) => this.log('DEBUG', message, meta);
  info = (message: string, meta?: LogMetadata) => this.log('INFO', message, meta);
  warn = (message: string, meta?: LogMetadata) => this.log('WARN', message, meta);
  error = (message: string, meta?: LogMetadata) => this.log('ERROR', message, meta);
}

/**
 * Sets up the Temporal SDK for a service process, before its first connection (the SDK takes one setup per process):
 * its logs go through the service's logger, and it leaves SIGTERM/SIGINT to the service, which stops its parts in
 * order (intake first) and drains the worker in its turn. By default the SDK would print its own log format to stderr
 * and shut the worker down by itself at the signal.
 */
export function installSdkRuntime(log: Logger): void {
  Runtime.install({ logger: new SdkLogAdapter(log.child({ lib: 'temporal' })), shutdownSignals: [] });
}
