import { createScratchDatabase } from '../../bench/support/database';

/**
 * A fresh database for one test file (crm_test_<label>_…), prepared as a service prepares it unless `prepare` says
 * otherwise; drop() removes it.
 */
export const createTestDatabase = (
  baseUrl: string,
  label: string,
  prepare?: (databaseUrl: string) => Promise<unknown>,
) => createScratchDatabase(baseUrl, label, 'crm_test', prepare);
