/**
 * The register service as the route sees it: the per-user limit first, then the service, with
 * every outcome counted for metrics.
 *
 * @module
 */
import { HttpError } from "../http/errors.ts";
import { enforceLimit } from "../limits/http.ts";
import type { RateLimit } from "../limits/types.ts";
import type { RegisterService } from "./service.ts";

export interface GuardedRegisterServiceOptions {
  service: RegisterService;
  perUserLimit: RateLimit | undefined;
  onOutcome: (outcome: string) => void;
}

export function guardRegisterService(options: GuardedRegisterServiceOptions): RegisterService {
  return {
    async register(input) {
      await enforceLimit(options.perUserLimit, input.siteUserId);
      try {
        const result = await options.service.register(input);
        options.onOutcome("ok");
        return result;
      } catch (error) {
        options.onOutcome(error instanceof HttpError ? error.code : "error");
        throw error;
      }
    },
  };
}
