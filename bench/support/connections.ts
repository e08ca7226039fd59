import pg from 'pg';

/** What one pool (one application_name) was seen doing in pg_stat_activity. */
export interface PoolActivity {
  /** Most connections at once. */
  most: number;
  /** Connections, summed over the samples, that were running a query like the pattern asked for. */
  running: number;
}

/**
 * Samples pg_stat_activity of one database every `everyMs` on a connection of its own (named crm-bench-sampler and
 * not counted), per application_name: how many connections each pool holds at most, and how often its connections
 * were running a query `LIKE runningLike`. stop() ends the sampling and returns what was seen.
 */
export function sampleConnections(databaseUrl: string, runningLike = '', everyMs = 50) {
  const seen: Record<string, PoolActivity> = {};
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'crm-bench-sampler' });
  // A benchmark that fails drops its database, which ends this connection: that must not hide the failure itself.
  client.on('error', () => undefined);
  let queue: Promise<unknown> = client.connect();
  const sample = async () => {
    const { rows } = await client.query<{ app: string; n: number; running: number }>(
      // A session holding advisory locks carries its process's tag (application_name <name>:<tag>, shared/db.ts
      // lockNames): counted with its pool.
      `SELECT regexp_replace(application_name, ':[0-9a-f-]{36}$', '') AS app, count(*)::int AS n,
              count(*) FILTER (WHERE state = 'active' AND $1 <> '' AND query LIKE $1)::int AS running
         FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid()
        GROUP BY 1`,
      [runningLike],
    );
    for (const { app, n, running } of rows) {
      const pool = (seen[app] ??= { most: 0, running: 0 });
      pool.most = Math.max(pool.most, n);
      pool.running += running;
    }
  };
  const timer = setInterval(() => {
    queue = queue.then(sample).catch(() => undefined);
  }, everyMs);
  let stopped: Promise<Record<string, PoolActivity>> | undefined;
  return {
    /** Ends the sampling (once; later calls get the same answer) and returns what was seen. */
    stop(): Promise<Record<string, PoolActivity>> {
      stopped ??= (async () => {
        clearInterval(timer);
        await queue;
        await client.end().catch(() => undefined);
        return seen;
      })();
      return stopped;
    },
  };
}
