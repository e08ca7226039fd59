// Lint: type-aware rules that catch real bugs (floating promises), consistent type imports, no import cycles, and the
// Temporal rule that workflow code stays deterministic: nothing under workflows/ may import I/O or Node built-ins.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import importPlugin from 'eslint-plugin-import';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.stack/**', 'coverage/**', '**/*.js', '**/*.mjs', 'monitoring/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    plugins: { import: importPlugin },
    settings: { 'import/resolver': { node: { extensions: ['.ts', '.js'] } } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
      'import/no-cycle': 'error',
    },
  },
  {
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['node:*', 'fs', 'path', 'crypto', 'http', 'net', 'child_process'],
              message: 'Workflow code must be deterministic: no Node built-ins.',
            },
            {
              group: ['pg', 'kafkajs', 'prom-client', 'pino', 'fastify', '@temporalio/client', '@temporalio/worker'],
              message: 'Workflows do no I/O: call an activity.',
            },
            {
              group: ['../shared/*', '../repository/*', '../ingest/*', '../api/*'],
              message: 'Workflows import only @temporalio/workflow, their definitions, and activity types.',
            },
            {
              group: ['../journal/*', '!../journal/kinds'],
              message: 'Of journal/, workflows import only kinds.ts (pure constants).',
            },
            {
              group: ['../activities', '../activities/*'],
              allowTypeImports: true,
              message: 'Import activity types only (proxyActivities<Activities>).',
            },
          ],
        },
      ],
    },
  },
);
