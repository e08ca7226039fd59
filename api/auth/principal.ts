/** The roles a token can carry, least to most powerful. */
export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** Who is calling: from a verified token, or the anonymous admin when auth is off. */
export interface Principal {
  subject: string;
  role: Role;
  /** Present for tenant-scoped tokens: the caller sees and replays only this tenant's events. */
  tenantId?: string;
}

/** True when `role` may do what `needed` may. */
export function hasRole(role: Role, needed: Role): boolean {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed);
}

/** Whether a claim value names a role we know. */
export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}
