import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { listSegments, type ArchiveStore } from '../../archive';
import type { Config } from '../../shared/config';
import { errorResponses } from '../schemas';

const Segment = Type.Object({
  segment: Type.String(),
  table: Type.String(),
  bounds: Type.Union([Type.Object({ from: Type.String(), to: Type.String() }), Type.Null()]),
  rows: Type.Integer(),
  id: Type.Union([Type.Object({ min: Type.Integer(), max: Type.Integer() }), Type.Null()]),
  received_at: Type.Union([Type.Object({ min: Type.String(), max: Type.String() }), Type.Null()]),
  bytes: Type.Integer(),
  sha256: Type.String(),
  generation: Type.Integer(),
  created_at: Type.String(),
});

/** GET /archive: the archived journal segments (docs/archive.md), oldest first, from their manifests. */
const archiveRoutes: FastifyPluginAsyncTypebox<{ archive: ArchiveStore; config: Pick<Config, 'archive'> }> = async (
  app,
  { archive, config },
) => {
  app.get(
    '/archive',
    {
      schema: {
        tags: ['lifecycle'],
        summary: 'Archived journal segments: what each holds (rows, id and time ranges) and its checksum',
        response: {
          200: Type.Object({ store: Type.String(), segments: Type.Array(Segment) }),
          ...errorResponses,
        },
      },
    },
    async () => {
      const manifests = await listSegments(archive);
      return {
        store: config.archive.store,
        segments: manifests.map((m) => ({
          segment: m.segment,
          table: m.table,
          bounds: m.bounds,
          rows: m.rows,
          id: m.id,
          received_at: m.received_at,
          bytes: m.file.bytes,
          sha256: m.file.sha256,
          generation: m.generation,
          created_at: m.created_at,
        })),
      };
    },
  );
};

export default archiveRoutes;
