/** Tokenizing worker for prepare.ts: loads the tokenizer once, encodes batches of documents. */
import { parentPort, workerData } from "node:worker_threads";
import { loadTokenizer } from "../tokenizer/io.ts";
import { encodeDocs } from "./encode-docs.ts";
import type { WorkerJob, WorkerResult } from "./prepare.ts";

const tok = loadTokenizer((workerData as { tokenizer: string }).tokenizer);
parentPort!.on("message", (job: WorkerJob) => {
  let reply: WorkerResult;
  try {
    const { ids, lens } = encodeDocs(tok, job.docs);
    reply = { seq: job.seq, ids, lens };
  } catch (err) {
    reply = { seq: job.seq, error: (err as Error).message };
  }
  parentPort!.postMessage(reply, reply.ids ? [reply.ids.buffer as ArrayBuffer, reply.lens!.buffer as ArrayBuffer] : []);
});
