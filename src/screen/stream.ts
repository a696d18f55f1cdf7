/**
 * Screening while streaming, incrementally. The reply is cut into chunks that are screened
 * once each and then shown: a chunk ends at a cut point that is
 *   - at least `holdBack` characters before the end of what has been generated, where
 *     holdBack (streamHoldBack) is the longest text any detector may need before it matches
 *     (an e-mail address's local part, @ and first label; a phone or card number; the longest
 *     blocklist phrase; a regex rule's `holdBack`), so a match still being generated is never
 *     split and its start never shown before it is redacted;
 *   - before every match that reaches past it (a match that may still grow, like a URL), and
 *   - right after a character that cannot continue a word, number or address (a space,
 *     punctuation), so a detector's look-behind sees at a chunk's start what it would see in
 *     the whole reply.
 * Each token therefore costs screening of about holdBack characters, not of the whole reply;
 * the loop detector advances one character at a time (LoopWatcher, O(maxPeriod) a
 * character). `end` screens the whole reply once: when that disagrees with what was shown (a
 * block rule fired late, a loop was cut), it says so, so the caller can show the final text.
 */
import type { ScreenConfig } from "./config.ts";
import { LoopWatcher } from "./degeneration.ts";
import { findPii } from "./pii.ts";
import { blockedByRules, nonEmptyMatches, regexOf, screenReply, type ReplyInfo, type ScreenResult } from "./screen.ts";

export interface ScreenedStream {
  /** Adds generated text; shows whatever became settled. */
  push(text: string): void;
  /** True once screening found something that ends the reply early (block, loop, runaway length). */
  readonly stopEarly: boolean;
  /** Finishes: screens the whole reply, shows the rest. `diverged` when the shown prefix was retracted. */
  end(info?: ReplyInfo): { result: ScreenResult; diverged: boolean };
  /** Characters screened so far (the cost; about holdBack per pushed piece, however long the reply). */
  readonly screenedChars: number;
}

// The longest text each PII detector can need before it matches (src/screen/pii.ts's patterns):
// e-mail: local part (≤ 64) + "@" + first label (≤ 63) + "." + 1 letter; phones: "+CCC" and six
// groups "(dddd)" with separators; cards: 19 digits with 18 separators; Chinese IDs: 18.
const PII_HOLD_BACK = { email: 64 + 1 + 63 + 2, phone: 4 + 6 * 7, card: 19 + 18, cn_id: 18 } as const;

/** What a regex rule may need before it matches, when the rule does not say (`holdBack`). */
export const DEFAULT_RULE_HOLD_BACK = 64;

/** Characters held back while streaming under `cfg`: the longest text any of its detectors may need. */
export function streamHoldBack(cfg: ScreenConfig): number {
  let h = 1; // look-ahead of one character (e.g. "not followed by a digit")
  if (cfg.pii.enabled) for (const k of cfg.pii.kinds) h = Math.max(h, PII_HOLD_BACK[k] + 1);
  for (const r of cfg.rules) {
    // Blocklist phrases match with any run of whitespace between words: allow double length.
    if (r.type === "blocklist") for (const w of r.words ?? []) h = Math.max(h, 2 * [...w].length + 1);
    else h = Math.max(h, (r.holdBack ?? DEFAULT_RULE_HOLD_BACK) + 1);
  }
  return h;
}

/** A cut may follow this character: it cannot continue a word, a number or an address. */
const BOUNDARY = /[^\p{L}\p{N}\p{M}_+\-.@%'’()]/u;

export function screenedStream(cfg: ScreenConfig, show: (text: string) => void, holdBack = streamHoldBack(cfg)): ScreenedStream {
  // Chunks are screened by rules and PII only; degeneration is watched incrementally here and
  // applied once by `end`, confidence needs the whole reply.
  const chunkCfg: ScreenConfig = { ...cfg, degeneration: { ...cfg.degeneration, enabled: false }, confidence: { ...cfg.confidence, enabled: false } };
  const regexes = cfg.rules.map(regexOf); // compiled once per rule, not per reply
  const piiKinds = new Set(cfg.pii.enabled ? cfg.pii.kinds : []);
  const loops = cfg.degeneration.enabled ? new LoopWatcher(cfg.degeneration) : null;
  let raw = "";
  let done = 0; // raw[0, done) has been screened chunk by chunk and shown
  let shown = "";
  let chars = 0; // code points of raw, for the runaway-length limit
  let stop = false;
  let work = 0;

  /** Every match of the rules and personal-data detectors in `text`, as [start, end) spans. */
  const matchSpans = (text: string): [number, number][] => {
    const spans: [number, number][] = [];
    for (const re of regexes) {
      re.lastIndex = 0;
      for (const m of nonEmptyMatches(text, re)) spans.push([m.index, m.index + m[0].length]);
    }
    if (piiKinds.size > 0) for (const s of findPii(text, piiKinds)) spans.push([s.start, s.end]);
    return spans;
  };
  /** Start of the earliest match that ends after `cut` and starts before it (a match that may still grow), else cut. */
  const beforeMatches = (spans: [number, number][], cut: number): number => {
    let c = cut;
    for (const [start, end] of spans) if (end > c && start < c) c = start;
    return c;
  };

  return {
    push(text: string): void {
      raw += text;
      if (stop) return;
      for (const _ of text) chars++;
      if (loops?.push(text) || (cfg.degeneration.enabled && chars > cfg.degeneration.maxChars)) {
        stop = true;
        return;
      }
      // A block anywhere in the unshown text ends generation now, even before a chunk is due.
      const pending = raw.slice(done);
      work += pending.length;
      if (blockedByRules(pending, chunkCfg)) {
        stop = true;
        return;
      }
      if (pending.length <= holdBack) return;
      // The cut: holdBack from the end, before any match reaching past it, after a boundary character.
      // (The matches are found once: the loop below only moves the cut over them.)
      const spans = matchSpans(pending);
      const safe = beforeMatches(spans, pending.length - holdBack);
      // Back to a boundary; that may land inside a match ("+1 415 555 |0100"), so again before it.
      let cut = safe;
      for (let prev = -1; cut !== prev && cut > 0; ) {
        prev = cut;
        while (cut > 0 && !BOUNDARY.test(pending[cut - 1])) cut--;
        cut = beforeMatches(spans, cut);
      }
      // Text with no boundary for long (a run of letters): cut anyway, so the cost stays bounded
      // (`end` still screens the whole reply and reports any difference).
      if (cut === 0 && pending.length > 4 * holdBack) cut = safe;
      if (cut === 0) return;
      const chunk = pending.slice(0, cut);
      work += chunk.length;
      const c = screenReply(chunk, {}, chunkCfg);
      if (c.verdict === "blocked") {
        stop = true;
        return;
      }
      done += cut;
      if (c.text) {
        show(c.text);
        shown += c.text;
      }
    },
    get stopEarly(): boolean {
      return stop;
    },
    get screenedChars(): number {
      return work;
    },
    end(info: ReplyInfo = {}) {
      const result = screenReply(raw, info, cfg);
      work += raw.length;
      const diverged = !result.text.startsWith(shown);
      if (!diverged) show(result.text.slice(shown.length));
      shown = result.text;
      return { result, diverged };
    },
  };
}
