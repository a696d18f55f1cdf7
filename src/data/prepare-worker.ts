/**
 * Tokenizing worker for prepare.ts: loads the tokenizer once, then cleans and encodes batches
 * of documents (cleanEncode), so the main thread only reads, deduplicates and writes.
 */
import { parentPort, workerData } from "node:worker_threads";
import { loadTokenizer } from "../tokenizer/io.ts";
import { cleanEncode } from "./encode-docs.ts";
import type { WorkerJob, WorkerResult } from "./prepare.ts";

const tok = loadTokenizer((workerData as { tokenizer: string }).tokenizer);
parentPort!.on("message", (job: WorkerJob) => {
  let reply: WorkerResult;
  try {
    reply = { seq: job.seq, ...cleanEncode(tok, job.docs, job.minChars, job.tokenize) };
  } catch (err) {
    reply = { seq: job.seq, error: (err as Error).message };
  }
  const transfer = reply.status ? [reply.status.buffer, reply.digests!.buffer, reply.chars!.buffer, ...(reply.ids ? [reply.ids.buffer, reply.lens!.buffer] : [])] : [];
  parentPort!.postMessage(reply, transfer as ArrayBuffer[]);
});
