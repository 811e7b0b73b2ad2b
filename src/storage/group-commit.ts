/**
 * Group commit for SQLite: the writes that hot paths submit during one turn of the event loop (a
 * callback's inbox row, a streamed segment's outbox commit) run in one transaction at the end of
 * the turn, each in a savepoint of its own, and every caller is answered after that transaction
 * committed. A caller still waits for its own durable commit (a callback is acked only then), but
 * a hundred segments cost one BEGIN/COMMIT and one append to the WAL instead of a hundred, and
 * they run as prepared statements, synchronously, without Kysely's query building per call.
 *
 * One item's failure (a repeated msgid's primary key, a stale seq) rolls back only its savepoint;
 * a failed COMMIT fails the whole group, and nothing of it is durable.
 *
 * The connection is the one Kysely also uses. Kysely holds a SQLite transaction only for the
 * microtasks of its callback, but a flush must never run inside one (its writes would join it), so
 * a flush that finds a transaction open waits for the next turn.
 *
 * @module
 */
import type { SqliteStatement } from "kysely";

/** What a submitted piece of work may do: run prepared statements. */
export interface GroupExecutor {
  run(sql: string, parameters: readonly unknown[]): { changes: number };
}

export interface GroupCommitConnection {
  prepare(sql: string): SqliteStatement;
  readonly inTransaction: boolean;
  /** Sets SQLite's busy timeout (ms) of the connection. */
  setBusyTimeout(milliseconds: number): void;
}

/** How long a group waits, in all, for another connection's write lock before it fails. */
const LOCK_WAIT_MS = 5_000;
/** Between two tries for the write lock: the event loop runs meanwhile. */
const LOCK_RETRY_MS = 1;

function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "SQLITE_BUSY" || code === "SQLITE_LOCKED";
}

interface Pending {
  work: (executor: GroupExecutor) => unknown;
  /** One statement: SQLite undoes a failed statement by itself, so it needs no savepoint. */
  singleStatement: boolean;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

export class SqliteGroupCommit {
  private pending: Pending[] = [];
  private scheduled = false;
  /** When the current group first found the write lock taken; undefined while it was not. */
  private lockWaitSince: number | undefined;
  private readonly executor: GroupExecutor;

  constructor(
    private readonly connection: GroupCommitConnection,
    private readonly onStatement?: (sql: string) => void,
  ) {
    this.executor = {
      run: (sql, parameters) => {
        this.onStatement?.(sql);
        const result = this.connection.prepare(sql).run(parameters) as { changes: number | bigint };
        return { changes: Number(result.changes) };
      },
    };
  }

  /**
   * Runs `work` in the next group transaction; resolves with its result once that committed. Work
   * that runs exactly one statement may say so (`singleStatement`): it then costs no savepoint.
   */
  submit<T>(work: (executor: GroupExecutor) => T, options: { singleStatement?: boolean } = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({
        work,
        singleStatement: options.singleStatement === true,
        resolve: resolve as (value: unknown) => void,
        reject,
      });
      this.schedule();
    });
  }

  private schedule(delayMs = 0): void {
    if (this.scheduled) return;
    this.scheduled = true;
    if (delayMs > 0) setTimeout(() => this.flush(), delayMs);
    else setImmediate(() => this.flush());
  }

  /**
   * Takes the write lock without waiting: SQLite's own busy handler would sleep the whole thread
   * (1, 2, 5, 10 … ms at a time) while another connection writes, the reply thread's for the
   * callback thread and back. A group that finds the lock taken tries again a millisecond later,
   * and the event loop answers other requests meanwhile. False: try later.
   */
  private begin(): boolean {
    this.connection.setBusyTimeout(0);
    try {
      this.statement("begin immediate");
      this.lockWaitSince = undefined;
      return true;
    } catch (error) {
      if (!isBusy(error)) throw error;
      this.lockWaitSince ??= Date.now();
      if (Date.now() - this.lockWaitSince >= LOCK_WAIT_MS) {
        this.lockWaitSince = undefined;
        throw error;
      }
      return false;
    } finally {
      this.connection.setBusyTimeout(LOCK_WAIT_MS);
    }
  }

  private statement(sql: string): void {
    this.onStatement?.(sql);
    this.connection.prepare(sql).run([]);
  }

  /** Commits what is pending now (before the connection closes), waiting for the lock if need be. */
  drain(): void {
    this.flush(true);
  }

  private flush(wait = false): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    if (this.connection.inTransaction) {
      this.schedule();
      return;
    }
    // IMMEDIATE takes the write lock before any statement, so none can fail half-way for want of it.
    let locked: boolean;
    try {
      if (wait) {
        this.statement("begin immediate");
        locked = true;
      } else locked = this.begin();
    } catch (error) {
      const group = this.pending;
      this.pending = [];
      for (const item of group) item.reject(error);
      return;
    }
    if (!locked) {
      this.schedule(LOCK_RETRY_MS);
      return;
    }
    const group = this.pending;
    this.pending = [];
    const outcomes: Array<{ value: unknown } | { error: unknown }> = [];
    try {
      for (const item of group) {
        if (item.singleStatement) {
          try {
            outcomes.push({ value: item.work(this.executor) });
          } catch (error) {
            outcomes.push({ error });
          }
          continue;
        }
        this.statement("savepoint item");
        try {
          outcomes.push({ value: item.work(this.executor) });
          this.statement("release item");
        } catch (error) {
          this.statement("rollback to item");
          this.statement("release item");
          outcomes.push({ error });
        }
      }
      this.statement("commit");
    } catch (error) {
      if (this.connection.inTransaction) this.statement("rollback");
      for (const item of group) item.reject(error);
      return;
    }
    group.forEach((item, index) => {
      const outcome = outcomes[index] as { value: unknown } | { error: unknown };
      if ("error" in outcome) item.reject(outcome.error);
      else item.resolve(outcome.value);
    });
  }
}
