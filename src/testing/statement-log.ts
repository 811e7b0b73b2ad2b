/**
 * Counts what a piece of work costs the database, from the SQL texts `openDatabase` reports
 * through `onStatement`: every statement, and every commit (a transaction, or a write run on its
 * own, which commits by itself). Reads outside a transaction commit nothing worth counting.
 *
 * @example
 * const log = new StatementLog();
 * const database = await openDatabase("sqlite::memory:", { onStatement: log.record });
 * log.clear(); // forget the migrations
 * await repositories.inbox.accept(message);
 * expect(log.commits).toBe(1);
 */
export class StatementLog {
  readonly statements: string[] = [];

  readonly record = (sql: string): void => {
    this.statements.push(sql.trim().toLowerCase());
  };

  clear(): void {
    this.statements.length = 0;
  }

  /** The statements that read or write data: transaction control (begin, savepoints, commit) left out. */
  get data(): string[] {
    return this.statements.filter((statement) => !/^(begin|commit|rollback|savepoint|release)\b/.test(statement));
  }

  /** Transactions begun. */
  get transactions(): number {
    return this.statements.filter((statement) => statement.startsWith("begin")).length;
  }

  /** Transactions plus writes that ran outside one (each its own commit). */
  get commits(): number {
    let commits = 0;
    let inTransaction = false;
    for (const statement of this.statements) {
      if (statement.startsWith("begin")) {
        inTransaction = true;
        commits += 1;
      } else if (statement === "commit" || statement === "rollback") {
        inTransaction = false;
      } else if (!inTransaction && !statement.startsWith("select")) {
        commits += 1;
      }
    }
    return commits;
  }
}
