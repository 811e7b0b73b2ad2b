/** The shape of a bench run: its settings, what each scenario measured, and the printed rows. */
import type { ProfileSummary } from "./profile-summary.ts";
import type {
  CallsPerReplyResult,
  FirstSegmentResult,
  IdleRssResult,
  IngestResult,
  RegisterResult,
} from "./scenarios.ts";
import type {
  ConcurrencyResult,
  CpuPerMessageResult,
  FairPacingOptions,
  FairPacingResult,
  ScaleOutResult,
} from "./stream-scenarios.ts";

export interface Settings {
  ingest: {
    durationSeconds: number;
    warmupSeconds: number;
    fixedRateSeconds: number;
    connections: number;
    fixedRate: number;
    fixedRateConnections: number;
    poolSize: number;
  };
  firstSegment: { replies: number; spacingMs: number; tokens: number; intervalMs: number };
  calls: { replies: number; tokens: number; intervalMs: number; pacingMs: number };
  concurrency: {
    levels: number[];
    tokens: number;
    intervalMs: number;
    batch: number;
    doneTimeoutMs: number;
    probeRatePerSecond: number;
  };
  cpu: {
    streams: number;
    tokens: number;
    intervalMs: number;
    batch: number;
    doneTimeoutMs: number;
    anchorSockets: number;
  };
  burst: { users: number; tokens: number; intervalMs: number; timeoutMs: number };
  fairPacing: Omit<FairPacingOptions, "log">;
  scaleOut: { streams: number; tokens: number; intervalMs: number; batch: number; windowMs: number };
  idleRss: { idleSeconds: number };
  register: { durationSeconds: number; warmupSeconds: number; connections: number };
}

export interface BenchResults {
  startedAt: string;
  finishedAt?: string;
  quick: boolean;
  machine: Record<string, string | number>;
  settings: Settings;
  ingest?: IngestResult;
  firstSegment?: FirstSegmentResult;
  calls?: CallsPerReplyResult;
  concurrency?: ConcurrencyResult[];
  cpu?: CpuPerMessageResult;
  burst?: ConcurrencyResult;
  fairPacing?: FairPacingResult;
  scaleOut?: ScaleOutResult;
  scaleOutSkipped?: string;
  idleRss?: IdleRssResult;
  register?: RegisterResult;
  profiles?: ProfileSummary[];
  goals?: Row[];
  table?: Row[];
  errors?: Record<string, string>;
}

export interface Row {
  metric: string;
  value: string;
  target: string;
  status: "PASS" | "MISS" | "";
}
