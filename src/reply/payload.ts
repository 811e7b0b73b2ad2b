/**
 * The inbox row's `payload`: JSON the callback intake stored with a message (the reply a /stop
 * stopped, the sender's nickname, a media attachment). Read by admission, the processor and the
 * media hook; a missing or unreadable payload reads as empty (it came from a hostile copy).
 *
 * @module
 */
export function parsePayload<T extends object>(payload: string | null): Partial<T> {
  if (!payload) return {};
  try {
    const value: unknown = JSON.parse(payload);
    return typeof value === "object" && value !== null ? (value as Partial<T>) : {};
  } catch {
    return {};
  }
}
