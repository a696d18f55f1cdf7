/** Encoding worker for parallel.ts: builds the tokenizer from workerData, encodes texts on request. */
import { parentPort, workerData } from "node:worker_threads";
import { bpeTokenizer, type BpeSpec } from "./bpe.ts";
import type { WorkerReply, WorkerRequest } from "./parallel.ts";

const tok = bpeTokenizer(workerData as BpeSpec);
parentPort!.on("message", (m: WorkerRequest) => {
  let reply: WorkerReply;
  try {
    const allowed = m.allowedSpecial === "all" ? "all" : m.allowedSpecial ? new Set(m.allowedSpecial) : undefined;
    reply = { id: m.id, ids: Int32Array.from(tok.encode(m.text, { allowedSpecial: allowed })) };
  } catch (err) {
    reply = { id: m.id, error: (err as Error).message };
  }
  parentPort!.postMessage(reply, reply.ids ? [reply.ids.buffer as ArrayBuffer] : []);
});
