/**
 * One reply, from prompt ids to a screened result, shared by /v1/chat/completions,
 * /v1/completions and the web UI: the request is handed to the engine, the generated text is
 * screened as it grows (screen/stream.ts, as the chat CLI does) and only settled text is
 * passed on; when screening blocks, generation is cancelled and the reply ends with
 * finish_reason "content_filter". Cancelling (client gone, Stop) frees the slot within a step.
 */
import type { Generation } from "../infer/generate.ts";
import type { TokenEvent } from "../infer/batcher.ts";
import type { ScreenConfig, ScreenResult } from "../screen/index.ts";
import { screenedStream } from "../screen/stream.ts";
import type { GenerationEngine, WireOptions } from "./engine.ts";
import type { Metrics } from "./metrics.ts";

export type FinishReason = "stop" | "length" | "content_filter" | "cancelled";

export interface TurnResult {
  generation: Generation;
  screen: ScreenResult;
  /** The shown (screened) reply. */
  text: string;
  finish: FinishReason;
  /** True when text already streamed was retracted by the final screening (the UI replaces it). */
  replaced: boolean;
  promptTokens: number;
  completionTokens: number;
  ttftMs: number | null;
  durationMs: number;
}

export interface TurnHandlers {
  /** Settled text since the last call, with the tokens sampled since then. */
  onDelta?: (text: string, tokens: TokenEvent[]) => void;
}

/** What the server reports about screening, in an extra field OpenAI clients ignore. */
export function screeningInfo(r: ScreenResult, replaced = false): Record<string, unknown> {
  return {
    verdict: r.verdict,
    flags: r.events.map((e) => e.rule),
    events: r.events.map((e) => ({ rule: e.rule, action: e.action, detail: e.detail })),
    mean_logprob: r.meanLogprob,
    low_confidence: r.lowConfidence,
    ...(replaced ? { replaced: true } : {}),
  };
}

export function startTurn(engine: GenerationEngine, screen: ScreenConfig, prompt: number[], opts: WireOptions, topLogprobs: number,
                          h: TurnHandlers, metrics?: Metrics): { done: Promise<TurnResult>; cancel(): void } {
  const t0 = performance.now();
  let ttft: number | null = null;
  let pendingTokens: TokenEvent[] = [];
  const stream = screenedStream(screen, (text) => {
    h.onDelta?.(text, pendingTokens);
    pendingTokens = [];
  });
  let cancelled = false, blocked = false;
  let job: { cancel(): void } | undefined;
  const done = new Promise<TurnResult>((resolve, reject) => {
    job = engine.submit(prompt, opts, topLogprobs, {
      onStep: (text, tokens) => {
        if (ttft === null && tokens.length > 0) {
          ttft = performance.now() - t0;
          metrics?.observeTtft(ttft / 1000);
        }
        pendingTokens.push(...tokens);
        if (text) stream.push(text);
        if (stream.stopEarly && !blocked) {
          blocked = true;
          job?.cancel();
        }
      },
      onDone: (g) => {
        const { result, diverged } = stream.end({ tokenLogprobs: g.logprobs });
        if (pendingTokens.length > 0) { h.onDelta?.("", pendingTokens); pendingTokens = []; }
        const finish: FinishReason = result.verdict === "blocked" ? "content_filter"
          : cancelled ? "cancelled"
          : g.finish === "length" || g.finish === "context" ? "length" : "stop";
        metrics?.countTokens(prompt.length, g.ids.length);
        resolve({ generation: g, screen: result, text: result.text, finish, replaced: diverged, promptTokens: prompt.length,
                  completionTokens: g.ids.length, ttftMs: ttft, durationMs: performance.now() - t0 });
      },
      onError: reject,
    });
  });
  return { done, cancel: () => { cancelled = true; job?.cancel(); } };
}
