import { createScratchDatabase } from '../../bench/support/database';

/** A fresh, migrated database for one test file (crm_test_<label>_…); drop() removes it. */
export const createTestDatabase = (baseUrl: string, label: string) => createScratchDatabase(baseUrl, label, 'crm_test');
