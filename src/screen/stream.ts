/**
 * Screening while streaming: the reply is screened again as it grows, and only the part of
 * the screened text that is settled is shown — everything but the last `holdBack`
 * characters, and only while the screened text still extends what was shown. A match that
 * needs more text (a phone number half generated) is therefore redacted before it is shown.
 * When the final screening disagrees with what was already shown (a block rule fired late, a
 * loop was cut), `end` reports it so the caller can say so and show the final text.
 */
import type { ScreenConfig } from "./config.ts";
import { screenReply, type ReplyInfo, type ScreenResult } from "./screen.ts";

export interface ScreenedStream {
  /** Adds generated text; shows whatever became settled. */
  push(text: string): void;
  /** True once screening found something that ends the reply early (block or loop). */
  readonly stopEarly: boolean;
  /** Finishes: screens the whole reply, shows the rest. `diverged` when the shown prefix was retracted. */
  end(info?: ReplyInfo): { result: ScreenResult; diverged: boolean };
}

/** Characters held back while streaming: longer than any PII match or blocklist phrase we expect. */
export const STREAM_HOLD_BACK = 48;

export function screenedStream(cfg: ScreenConfig, show: (text: string) => void, holdBack = STREAM_HOLD_BACK): ScreenedStream {
  let raw = "";
  let shown = "";
  let stop = false;
  return {
    push(text: string): void {
      raw += text;
      if (stop) return;
      const r = screenReply(raw, {}, { ...cfg, confidence: { ...cfg.confidence, enabled: false } });
      if (r.verdict === "blocked" || r.events.some((e) => e.rule === "degeneration:loop")) {
        stop = true;
        return;
      }
      const settled = r.text.slice(0, Math.max(0, r.text.length - holdBack));
      if (settled.length > shown.length && settled.startsWith(shown)) {
        show(settled.slice(shown.length));
        shown = settled;
      }
    },
    get stopEarly(): boolean {
      return stop;
    },
    end(info: ReplyInfo = {}) {
      const result = screenReply(raw, info, cfg);
      const diverged = !result.text.startsWith(shown);
      if (!diverged) show(result.text.slice(shown.length));
      shown = result.text;
      return { result, diverged };
    },
  };
}
