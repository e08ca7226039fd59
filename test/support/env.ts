import { loadConfig, type Config } from '../../shared/config';

/** The stack the tests run against: the local one from scripts/stack.sh unless the environment says otherwise. */
export function baseConfig(overrides: Record<string, string> = {}): Config {
  return loadConfig({ LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent', ...process.env, ...overrides });
}

/** A short unique suffix for databases, topics and consumer groups, so suites never see each other's data. */
export function uniqueSuffix(): string {
  return `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}
