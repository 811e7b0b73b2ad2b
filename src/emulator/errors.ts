/**
 * The NIM-level refusal every emulator surface shares: the classic API answers it as HTTP 200 with
 * `{"desc":…,"code":…}`, the v2 API as `{"code","msg"}`, the gateway as a `sent`/`error` frame.
 * Its own module so team and recall rules (teams.ts, recall.ts) can throw it without importing the
 * routes.
 */
export class ClassicApiError extends Error {
  constructor(
    readonly code: number,
    readonly desc: string,
  ) {
    super(`${code} ${desc}`);
  }
}
