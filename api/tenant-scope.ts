import type { FastifyRequest } from 'fastify';
import { httpError } from './http-error';

/**
 * The tenant a request may see: a tenant-scoped token pins it (asking for another tenant is a 403); otherwise the
 * tenant the caller asked for, if any.
 */
export function scopedTenant(request: FastifyRequest, requested?: string): string | undefined {
  const own = request.principal.tenantId;
  if (own === undefined) return requested;
  if (requested !== undefined && requested !== own) {
    throw httpError(403, `This token is scoped to tenant ${own}; it may not read tenant ${requested}`);
  }
  return own;
}

/** True when the caller may see a row of `tenantId`. */
export function canSee(request: FastifyRequest, tenantId: string | null): boolean {
  const own = request.principal.tenantId;
  return own === undefined || own === tenantId;
}
