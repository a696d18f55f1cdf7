/** Encoding worker for parallel.ts: builds the tokenizer from workerData, encodes texts on request. */
import { parentPort, workerData } from "node:worker_threads";
import { bpeTokenizer } from "./bpe.ts";
import { unpackSpec, type PackedSpec, type WorkerReply, type WorkerRequest } from "./parallel.ts";

const tok = bpeTokenizer(unpackSpec(workerData as PackedSpec));
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
