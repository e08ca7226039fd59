import { randomUUID } from 'node:crypto';

export const LEADS_TOPIC = 'apexflow.leads.created';
export const JOBS_TOPIC = 'apexflow.jobs.created';

const FIRST = ['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Margaret', 'Ken', 'Radia', 'Linus'];
const LAST = ['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Hamilton', 'Thompson', 'Perlman'];
const SOURCES = ['web-form', 'referral', 'trade-show', 'cold-call', 'dashboard-test', 'partner'];
const STATUSES = ['Open', 'Scheduled', 'In Progress', 'On Hold'];

export interface TrafficEvent {
  topic: string;
  key: string;
  value: string;
}

/** Tenant names as the ApexFlow gateway emits them: "acme" first, then tenant-002, tenant-003... */
export function tenantName(index: number): string {
  return index === 0 ? 'acme' : `tenant-${String(index + 1).padStart(3, '0')}`;
}

/**
 * A realistic ApexFlow domain event (300–500 bytes), in the shapes of the operator docs: leads carry
 * name/email/source, jobs carry lead_id/title/status/description.
 */
export function makeEvent(seq: number, tenants: number, topic?: string): TrafficEvent {
  const tenant = tenantName(seq % tenants);
  const pick = <T>(items: T[]) => items[(seq * 7919) % items.length];
  const chosen = topic ?? (seq % 3 === 2 ? JOBS_TOPIC : LEADS_TOPIC);
  const common = { tenant_id: tenant, event_id: randomUUID(), occurred_at: new Date().toISOString(), seq };
  const name = `${pick(FIRST)} ${LAST[(seq * 31) % LAST.length]}`;
  const body = chosen.includes('jobs')
    ? {
        event_type: 'job.created',
        ...common,
        job_id: 10_000 + seq,
        lead_id: 1 + (seq % 5000),
        title: `Install job ${seq} for ${name}`,
        status: pick(STATUSES),
        description: `Site survey and installation booked through ApexFlow for ${name}; crew of two, half a day.`,
      }
    : {
        event_type: 'lead.created',
        ...common,
        lead_id: 1 + seq,
        name,
        email: `${name.toLowerCase().replace(' ', '.')}.${seq}@example.com`,
        phone: `+1-555-${String(1000 + (seq % 9000)).padStart(4, '0')}`,
        source: pick(SOURCES),
        notes: 'Asked for a callback about the premium plan; prefers mornings.',
      };
  return { topic: chosen, key: `${tenant}:${seq}`, value: JSON.stringify(body) };
}
