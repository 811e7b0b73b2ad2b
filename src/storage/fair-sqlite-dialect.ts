/**
 * Kysely's SQLite dialect with a first-come-first-served wait for its one connection.
 *
 * Kysely's SQLite driver guards the connection with a mutex whose waiters all await the same
 * promise: every release wakes every waiter, one takes the connection and the rest go back to
 * waiting. With a few waiters that is nothing; with two thousand replies streaming on one thread
 * it made each release cost as much as the waiters queued behind it, and the lock and unlock were
 * 18 % of the reply thread's CPU in the 2,000-stream profile (BENCHMARKS.md). A queue in front
 * lets exactly one caller at a time reach the driver's own mutex (which is then never contended)
 * and hands the connection on in arrival order, each release waking exactly one waiter.
 *
 * @module
 */
import {
  type DatabaseConnection,
  type Driver,
  type QueryCompiler,
  SqliteDialect,
  type TransactionSettings,
} from "kysely";
import { FifoSemaphore } from "../concurrency/fifo-semaphore.ts";

class FairDriver implements Driver {
  private readonly gate = new FifoSemaphore(1);

  constructor(private readonly inner: Driver) {}

  init(): Promise<void> {
    return this.inner.init();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    await this.gate.acquire();
    try {
      return await this.inner.acquireConnection();
    } catch (error) {
      this.gate.release();
      throw error;
    }
  }

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    try {
      await this.inner.releaseConnection(connection);
    } finally {
      this.gate.release();
    }
  }

  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    return this.inner.beginTransaction(connection, settings);
  }

  commitTransaction(connection: DatabaseConnection): Promise<void> {
    return this.inner.commitTransaction(connection);
  }

  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    return this.inner.rollbackTransaction(connection);
  }

  async savepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]) {
    await this.inner.savepoint?.(connection, name, compile);
  }

  async rollbackToSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]) {
    await this.inner.rollbackToSavepoint?.(connection, name, compile);
  }

  async releaseSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]) {
    await this.inner.releaseSavepoint?.(connection, name, compile);
  }

  destroy(): Promise<void> {
    return this.inner.destroy();
  }
}

export class FairSqliteDialect extends SqliteDialect {
  override createDriver(): Driver {
    return new FairDriver(super.createDriver());
  }
}
