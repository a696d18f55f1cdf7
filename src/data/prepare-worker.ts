/**
 * Tokenizing worker of encode-pool.ts: loads the tokenizer once, says it is ready, then
 * cleans and encodes batches of documents (cleanEncode) and sends their results back as
 * transferred typed arrays.
 */
import { parentPort, workerData } from "node:worker_threads";
import { loadTokenizer } from "../tokenizer/io.ts";
import { cleanEncode } from "./encode-docs.ts";
import type { WorkerReply, WorkerRequest } from "./encode-pool.ts";

const tok = loadTokenizer((workerData as { tokenizer: string }).tokenizer);
parentPort!.postMessage({ ready: true } satisfies WorkerReply);
parentPort!.on("message", (job: WorkerRequest) => {
  let reply: WorkerReply;
  const transfer: ArrayBuffer[] = [];
  try {
    const r = cleanEncode(tok, job.docs, job.minChars, job.tokenize);
    reply = { seq: job.seq, ...r };
    for (const a of [r.status, r.digests, r.chars, r.ids, r.lens]) if (a) transfer.push(a.buffer as ArrayBuffer);
  } catch (err) {
    reply = { seq: job.seq, error: (err as Error).message };
  }
  parentPort!.postMessage(reply, transfer);
});
