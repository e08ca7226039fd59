import fp from 'fastify-plugin';
import type { TopicCatalog } from '../../shared/kafka';
import { httpError } from '../http-error';

/** What replay routes ask before starting a workflow: do these target topics exist? */
export interface TopicCheck {
  /**
   * Throws 400 naming every topic of `topics` (keyed by the request field that named it) the broker does not have.
   * When Kafka cannot be asked, the request goes on: the replay waits for Kafka like any other, and a topic that
   * turns out missing fails it as UnknownTopic.
   */
  refuseMissing(topics: Record<string, string | undefined>): Promise<void>;
}

declare module 'fastify' {
  interface FastifyInstance {
    kafkaTopics: TopicCheck;
  }
}

/** Refuses replays to topics the broker does not have, from a topic list cached for a few seconds. */
export default fp<{ catalog: TopicCatalog }>(
  async (app, { catalog }) => {
    app.decorate('kafkaTopics', {
      async refuseMissing(topics) {
        const named = Object.entries(topics).filter((e): e is [string, string] => e[1] !== undefined);
        if (named.length === 0) return;
        let missing: string[];
        try {
          missing = await catalog.missing(named.map(([, topic]) => topic));
        } catch (err) {
          app.log.warn({ err: (err as Error).message }, 'Kafka unreachable: replay target topics not checked');
          return;
        }
        const refused = named.filter(([, topic]) => missing.includes(topic));
        if (refused.length > 0) {
          throw httpError(
            400,
            refused.map(([field, topic]) => `${field} "${topic}" does not exist in Kafka`).join('; ') +
              ' (replays publish only to existing topics; auto-creation is off)',
          );
        }
      },
    });
    app.addHook('onClose', () => catalog.close());
  },
  { name: 'kafka-topics' },
);
