/**
 * Counts items by label set, so that a batch adds to each Prometheus series once instead of once per event.
 * Returns each distinct label set (as built by labelsOf) with its count.
 */
export function countBy<T, L extends Record<string, string>>(
  items: Iterable<T>,
  labelsOf: (item: T) => L,
): [L, number][] {
  const counts = new Map<string, [L, number]>();
  for (const item of items) {
    const labels = labelsOf(item);
    const key = Object.values(labels).join('\u0000');
    const entry = counts.get(key);
    if (entry) entry[1] += 1;
    else counts.set(key, [labels, 1]);
  }
  return [...counts.values()];
}
