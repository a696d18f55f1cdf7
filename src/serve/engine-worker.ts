/**
 * The generation worker: the only thread that loads the model and the native addon (so the
 * HTTP event loop never runs a forward pass and the native pool has one user). It runs a
 * ContinuousBatcher: while any request is running or waiting it calls `step()`, and between
 * steps it yields to its own event loop (setImmediate) so that new requests and cancellations
 * posted by the HTTP side are taken in at the next step.
 */
import { parentPort, workerData } from "node:worker_threads";
import { loadChatModel } from "../infer/load.ts";
import { ContinuousBatcher } from "../infer/batcher.ts";
import { cpus, setThreads } from "../core/native.ts";
import type { ToWorker, FromWorker, EngineInit } from "./engine.ts";
import { threadsPerStep } from "./step-threads.ts";

const port = parentPort!;
const init = workerData as EngineInit;
// Events of one step go out as one message (16 streams = 1 postMessage per step, not 16).
let outbox: FromWorker[] = [];
const post = (m: FromWorker): void => { outbox.push(m); };
const flush = (): void => {
  if (outbox.length === 0) return;
  port.postMessage(outbox.length === 1 ? outbox[0] : ({ t: "batch", events: outbox } satisfies FromWorker));
  outbox = [];
};

let batcher: ContinuousBatcher;
try {
  // --threads 0: sized per step (step-threads.ts); else that many for every step.
  const { model, tokenizer } = loadChatModel(init.modelDir, { threads: init.threads === 0 ? 1 : init.threads, dtype: init.dtype });
  batcher = new ContinuousBatcher(model, tokenizer, init.parallel, init.contextTokens ?? model.config.seqLen);
  if (init.threads === 0 && model.backend.name.startsWith("native")) batcher.onForward = threadsPerStep(model.config, cpus(), setThreads);
  post({ t: "ready", backend: model.backend.name, maxT: batcher.maxT });
  flush();
} catch (err) {
  post({ t: "fatal", message: (err as Error).message });
  flush();
  process.exit(1);
}

const handles = new Map<string, number>();
let pumping = false;
/** Cumulative time of the steps (ms): the whole step, and posting its events to the HTTP thread. */
let stepMs = 0, postMs = 0;
function pump(): void {
  if (!batcher.busy) { pumping = false; flush(); return; }
  const t0 = performance.now();
  try {
    batcher.step();
  } catch (err) {
    // step() reports per-request failures itself; anything else must not kill the worker.
    console.error(`[mynah serve] generation step failed: ${(err as Error).stack ?? err}`);
  }
  const t1 = performance.now();
  const { forwardMs, sampleMs, rows } = batcher.time;
  post({ t: "stats", active: batcher.activeCount, pending: batcher.pendingCount,
    profile: { steps: batcher.steps, rows, forwardMs, sampleMs, stepMs: (stepMs += t1 - t0), postMs } });
  flush();
  postMs += performance.now() - t1;
  setImmediate(pump);
}

port.on("message", (m: ToWorker) => {
  if (m.t === "cancel") {
    const h = handles.get(m.id);
    if (h !== undefined) batcher.cancel(h);
    return;
  }
  const { id } = m;
  try {
    const h = batcher.add({
      prompt: m.prompt,
      opts: m.opts,
      topLogprobs: m.topLogprobs,
      onStart: () => post({ t: "start", id }),
      onStep: (text, tokens) => post({ t: "step", id, text, tokens }),
      onDone: (g) => { handles.delete(id); post({ t: "done", id, generation: g }); },
      onError: (err) => { handles.delete(id); post({ t: "error", id, message: err.message }); },
    });
    handles.set(id, h);
  } catch (err) {
    post({ t: "error", id, message: (err as Error).message });
    flush();
    return;
  }
  if (!pumping) { pumping = true; setImmediate(pump); }
});
