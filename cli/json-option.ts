import { readFileSync } from 'node:fs';

/**
 * The JSON value of an option given inline (`--<name> '<json>'`) or in a file (`--<name>-file F`); undefined with
 * neither. Giving both, or text that is not JSON, is an error naming the option.
 */
export function jsonOption(name: string, inline: string | undefined, file: string | undefined): unknown {
  if (inline !== undefined && file !== undefined) throw new Error(`give --${name} or --${name}-file, not both`);
  const [option, text] =
    inline !== undefined
      ? [`--${name}`, inline]
      : file !== undefined
        ? [`--${name}-file ${file}`, readFileSync(file, 'utf8')]
        : [];
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new Error(`${option} is not JSON: ${(err as Error).message}`);
  }
}
