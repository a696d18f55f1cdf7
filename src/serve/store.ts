/**
 * The server's storage: conversations, messages and feedback in one SQLite file
 * (better-sqlite3). The schema (docs/formats.md, "Server database"):
 *
 *   conversations  id, title, system, settings (JSON), source ('ui' | 'api'), leaf_id, created_at, updated_at
 *   messages       id, conversation_id, parent_id, role, content, model, settings (JSON),
 *                  finish_reason, screen_verdict, screen (JSON: events, flags), mean_logprob,
 *                  prompt_tokens, completion_tokens, ttft_ms, duration_ms, created_at
 *   feedback       message_id (one row per rated message), rating (−1, 0, 1), correction, created_at, updated_at
 *
 * Messages form a tree (parent_id): a regenerated reply is a sibling of the old one, an edited
 * user message a sibling of the original (a branch); `leaf_id` marks the branch shown.
 * Durability: WAL with synchronous=FULL, every write in a transaction, so a write that
 * returned is on disk even if the process is killed right after. The file (and its -wal/-shm)
 * is created owner-only (0600). The schema version is PRAGMA user_version; MIGRATIONS[i]
 * brings version i to i + 1.
 */
import Database from "better-sqlite3";
import { chmodSync, closeSync, existsSync, openSync } from "node:fs";
import { randomUUID } from "node:crypto";

const MIGRATIONS: string[] = [
  `CREATE TABLE conversations (
     id TEXT PRIMARY KEY,
     title TEXT NOT NULL,
     system TEXT NOT NULL DEFAULT '',
     settings TEXT NOT NULL DEFAULT '{}',
     source TEXT NOT NULL DEFAULT 'ui' CHECK (source IN ('ui', 'api')),
     leaf_id TEXT,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL
   );
   CREATE TABLE messages (
     id TEXT PRIMARY KEY,
     conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
     parent_id TEXT REFERENCES messages(id) ON DELETE CASCADE,
     role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
     content TEXT NOT NULL,
     model TEXT,
     settings TEXT,
     finish_reason TEXT,
     screen_verdict TEXT,
     screen TEXT,
     mean_logprob REAL,
     prompt_tokens INTEGER,
     completion_tokens INTEGER,
     ttft_ms REAL,
     duration_ms REAL,
     created_at INTEGER NOT NULL
   );
   CREATE INDEX messages_conversation ON messages(conversation_id, created_at);
   CREATE INDEX messages_parent ON messages(parent_id);
   CREATE TABLE feedback (
     message_id TEXT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
     rating INTEGER NOT NULL DEFAULT 0 CHECK (rating IN (-1, 0, 1)),
     correction TEXT,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL
   );`,
];
export const SCHEMA_VERSION = MIGRATIONS.length;

export interface Conversation {
  id: string;
  title: string;
  system: string;
  settings: Record<string, unknown>;
  source: "ui" | "api";
  leaf_id: string | null;
  created_at: number;
  updated_at: number;
}

export interface StoredMessage {
  id: string;
  conversation_id: string;
  parent_id: string | null;
  role: "user" | "assistant";
  content: string;
  model: string | null;
  settings: Record<string, unknown> | null;
  finish_reason: string | null;
  screen_verdict: string | null;
  screen: unknown;
  mean_logprob: number | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  ttft_ms: number | null;
  duration_ms: number | null;
  created_at: number;
  /** From the feedback table. */
  rating?: number;
  correction?: string | null;
}

export type NewMessage = Omit<StoredMessage, "id" | "created_at" | "rating" | "correction" | "conversation_id">;

/** Opens (creating owner-only, migrating) a database. ":memory:" keeps nothing. */
export function openDatabase(path: string): Database.Database {
  const memory = path === ":memory:";
  if (!memory && !existsSync(path)) closeSync(openSync(path, "wx", 0o600));
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  const version = db.pragma("user_version", { simple: true }) as number;
  if (version > SCHEMA_VERSION) {
    db.close();
    throw new Error(`database ${path}: schema version ${version} is newer than this mynah's (${SCHEMA_VERSION}); upgrade mynah`);
  }
  for (let v = version; v < SCHEMA_VERSION; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
  if (!memory) for (const f of [path, `${path}-wal`, `${path}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
  return db;
}

const parseJson = (s: unknown): unknown => (typeof s === "string" ? JSON.parse(s) : s ?? null);

function rowToConversation(r: Record<string, unknown>): Conversation {
  return { ...(r as unknown as Conversation), settings: parseJson(r.settings) as Record<string, unknown> };
}

function rowToMessage(r: Record<string, unknown>): StoredMessage {
  return { ...(r as unknown as StoredMessage), settings: parseJson(r.settings) as Record<string, unknown> | null, screen: parseJson(r.screen) };
}

/** How long an API exchange may wait to be committed with others (ms): what a crash can lose of the API log. */
export const GROUP_COMMIT_MS = 50;

/** Typed access to the tables; every write is one transaction. */
export class Store {
  readonly db: Database.Database;
  /** Statements compiled once (each write used to compile its SQL again: ~50 µs). */
  private readonly statements = new Map<string, Database.Statement>();
  /** Writes waiting for the next group commit (see `later`). */
  private deferred: (() => void)[] = [];
  private groupTimer: NodeJS.Timeout | null = null;
  constructor(readonly path: string) {
    this.db = openDatabase(path);
  }
  close(): void {
    this.commitDeferred();
    this.db.close();
  }

  /**
   * A write nobody waits for (an API exchange, stored after its reply was sent): it joins a
   * group committed together at most GROUP_COMMIT_MS later, one sync to disk for the group
   * instead of one per request (a sync blocks the HTTP thread, ~0.2–1 ms here). Each write is
   * its own savepoint, so one that fails is rolled back alone and reported. Writes someone
   * waits for (the web UI's messages, feedback) commit before their response, as before.
   */
  later(write: () => void): void {
    this.deferred.push(write);
    this.groupTimer ??= setTimeout(() => this.commitDeferred(), GROUP_COMMIT_MS);
  }

  /** Commits the waiting writes now (also on close): one transaction, a savepoint per write. */
  commitDeferred(): void {
    if (this.groupTimer) clearTimeout(this.groupTimer);
    this.groupTimer = null;
    const writes = this.deferred;
    this.deferred = [];
    if (writes.length === 0) return;
    this.db.transaction(() => {
      for (const w of writes) {
        try {
          this.db.transaction(w)();
        } catch (err) {
          console.error(`[mynah serve] database ${this.path}: a deferred write failed and was rolled back: ${(err as Error).message}`);
        }
      }
    })();
  }

  private sql(text: string): Database.Statement {
    let st = this.statements.get(text);
    if (!st) this.statements.set(text, (st = this.db.prepare(text)));
    return st;
  }

  listConversations(query = "", source: "ui" | "api" | "all" = "ui"): Conversation[] {
    const like = `%${query.replace(/[\\%_]/g, (c) => "\\" + c)}%`;
    const rows = this.sql(
      `SELECT * FROM conversations c WHERE (@source = 'all' OR source = @source) AND
         (@q = '' OR title LIKE @like ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND m.content LIKE @like ESCAPE '\\'))
       ORDER BY updated_at DESC, created_at DESC`,
    ).all({ source, q: query, like }) as Record<string, unknown>[];
    return rows.map(rowToConversation);
  }

  getConversation(id: string): Conversation | undefined {
    const r = this.sql("SELECT * FROM conversations WHERE id = ?").get(id) as Record<string, unknown> | undefined;
    return r ? rowToConversation(r) : undefined;
  }

  createConversation(c: { title?: string; system?: string; settings?: Record<string, unknown>; source?: "ui" | "api" }): Conversation {
    const now = Date.now();
    const conv: Conversation = { id: randomUUID(), title: c.title ?? "New chat", system: c.system ?? "", settings: c.settings ?? {}, source: c.source ?? "ui", leaf_id: null, created_at: now, updated_at: now };
    this.sql(`INSERT INTO conversations (id, title, system, settings, source, leaf_id, created_at, updated_at)
                     VALUES (@id, @title, @system, @settings, @source, NULL, @created_at, @updated_at)`)
      .run({ ...conv, settings: JSON.stringify(conv.settings) });
    return conv;
  }

  updateConversation(id: string, patch: { title?: string; system?: string; settings?: Record<string, unknown>; leaf_id?: string }): Conversation | undefined {
    const tx = this.db.transaction(() => {
      const cur = this.getConversation(id);
      if (!cur) return undefined;
      const set = Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined));
      const next = { ...cur, ...set, updated_at: Date.now() };
      this.sql("UPDATE conversations SET title = @title, system = @system, settings = @settings, leaf_id = @leaf_id, updated_at = @updated_at WHERE id = @id")
        .run({ ...next, settings: JSON.stringify(next.settings) });
      return next;
    });
    return tx();
  }

  deleteConversation(id: string): boolean {
    return this.db.transaction(() => this.sql("DELETE FROM conversations WHERE id = ?").run(id).changes > 0)();
  }

  /** Every message of a conversation (all branches), oldest first, with its feedback. */
  messages(conversationId: string): StoredMessage[] {
    const rows = this.sql(
      `SELECT m.*, f.rating AS rating, f.correction AS correction FROM messages m LEFT JOIN feedback f ON f.message_id = m.id
       WHERE m.conversation_id = ? ORDER BY m.created_at, m.rowid`,
    ).all(conversationId) as Record<string, unknown>[];
    return rows.map(rowToMessage);
  }

  getMessage(id: string): StoredMessage | undefined {
    const r = this.sql("SELECT m.*, f.rating AS rating, f.correction AS correction FROM messages m LEFT JOIN feedback f ON f.message_id = m.id WHERE m.id = ?").get(id) as Record<string, unknown> | undefined;
    return r ? rowToMessage(r) : undefined;
  }

  /** The branch ending at `leafId`, root first. */
  branch(leafId: string | null): StoredMessage[] {
    const out: StoredMessage[] = [];
    for (let id = leafId; id; ) {
      const m = this.getMessage(id);
      if (!m) break;
      out.push(m);
      id = m.parent_id;
    }
    return out.reverse();
  }

  /** Adds a message under `parent_id` and makes it the conversation's shown branch. */
  addMessage(conversationId: string, m: NewMessage): StoredMessage {
    const tx = this.db.transaction(() => {
      const now = Date.now();
      const row = { ...m, id: randomUUID(), conversation_id: conversationId, created_at: now };
      this.sql(`INSERT INTO messages (id, conversation_id, parent_id, role, content, model, settings, finish_reason, screen_verdict, screen,
                         mean_logprob, prompt_tokens, completion_tokens, ttft_ms, duration_ms, created_at)
                       VALUES (@id, @conversation_id, @parent_id, @role, @content, @model, @settings, @finish_reason, @screen_verdict, @screen,
                         @mean_logprob, @prompt_tokens, @completion_tokens, @ttft_ms, @duration_ms, @created_at)`)
        .run({ ...row, settings: m.settings == null ? null : JSON.stringify(m.settings), screen: m.screen == null ? null : JSON.stringify(m.screen) });
      this.sql("UPDATE conversations SET leaf_id = ?, updated_at = ? WHERE id = ?").run(row.id, now, conversationId);
      return row as StoredMessage;
    });
    return tx();
  }

  /** Sets a message's rating and/or correction (the latest wins); returns false for an unknown message. */
  setFeedback(messageId: string, fb: { rating?: number; correction?: string | null }): boolean {
    const tx = this.db.transaction(() => {
      if (!this.sql("SELECT 1 FROM messages WHERE id = ?").get(messageId)) return false;
      const now = Date.now();
      this.sql(`INSERT INTO feedback (message_id, rating, correction, created_at, updated_at) VALUES (@id, @rating, @correction, @now, @now)
                       ON CONFLICT (message_id) DO UPDATE SET
                         rating = CASE WHEN @setRating THEN @rating ELSE rating END,
                         correction = CASE WHEN @setCorrection THEN @correction ELSE correction END,
                         updated_at = @now`)
        .run({ id: messageId, rating: fb.rating ?? 0, correction: fb.correction ?? null, now,
               setRating: fb.rating !== undefined ? 1 : 0, setCorrection: fb.correction !== undefined ? 1 : 0 });
      return true;
    });
    return tx();
  }
}
