/**
 * The interactive chat loop behind `mynah chat` (and the end of `mynah speedrun`): reads lines,
 * runs slash commands, streams each reply through screening, logs the screening result.
 * Works the same on a terminal and on piped stdin (then it prints only the replies, one
 * block per message, so scripts can read them).
 */
import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import { writeAtomic } from "../core/atomic-write.ts";
import type { ChatSession } from "../infer/session.ts";
import { logScreen, type ScreenConfig, type ScreenResult } from "../screen/index.ts";
import { screenedStream } from "../screen/stream.ts";
import { parseNumber, SAMPLING_RULES } from "./options.ts";

export interface ReplOptions {
  session: ChatSession;
  screen: ScreenConfig;
  /** JSONL file that receives one screening record per reply (none when undefined). */
  screenLog?: string;
  input: Readable;
  output: Writable;
  /** Where notes go (screening reports, errors); stderr by default. */
  notes?: Writable;
  /** Terminal mode: prompts, colours, a banner. */
  tty: boolean;
}

/** /set names (and short aliases) → the setting and its rule (the same as the flag's). */
const SETTINGS: Record<string, { key: "temperature" | "topK" | "topP" | "repetitionPenalty" | "maxNewTokens" | "seed"; name: keyof typeof SAMPLING_RULES }> = {
  temperature: { key: "temperature", name: "temperature" },
  "top-k": { key: "topK", name: "top-k" }, topk: { key: "topK", name: "top-k" },
  "top-p": { key: "topP", name: "top-p" }, topp: { key: "topP", name: "top-p" },
  "repetition-penalty": { key: "repetitionPenalty", name: "repetition-penalty" }, "repeat-penalty": { key: "repetitionPenalty", name: "repetition-penalty" },
  "max-new-tokens": { key: "maxNewTokens", name: "max-new-tokens" }, max: { key: "maxNewTokens", name: "max-new-tokens" },
  seed: { key: "seed", name: "seed" },
};

const HELP = `commands:
  /reset                 forget the conversation (keeps the system prompt)
  /system TEXT           set the system prompt ("/system" alone removes it)
  /set NAME VALUE        temperature, top-k, top-p, repetition-penalty, max-new-tokens, seed
  /settings              show the sampling settings
  /save FILE             save the conversation and settings as JSON
  /help                  this text
  /quit                  leave (Ctrl-D too)`;

/** One line of what screening did, for people. */
export function describeScreening(r: ScreenResult): string {
  const parts = r.events.map((e) => `${e.rule}: ${e.action}`);
  const conf = r.meanLogprob === null ? "" : `mean logprob ${r.meanLogprob.toFixed(2)}${r.lowConfidence ? " (low confidence)" : ""}`;
  return [r.verdict, ...parts, conf].filter(Boolean).join("; ");
}

/** Runs the loop until the input ends or /quit. */
export async function runChatRepl(o: ReplOptions): Promise<void> {
  const out = o.output, notes = o.notes ?? process.stderr;
  const dim = (s: string): string => (o.tty ? `\x1b[2m${s}\x1b[0m` : s);
  const rl = createInterface({ input: o.input, output: o.tty ? out : undefined, terminal: o.tty, prompt: o.tty ? "you> " : "" });
  const say = (s: string): void => void out.write(s);
  if (o.tty) say(dim("mynah chat — /help for commands, Ctrl-C stops a reply, Ctrl-D leaves\n"));
  // Ctrl-C (a key press the terminal interface turns into rl's SIGINT): while a reply is being
  // generated it stops the reply and the chat goes on (generation yields to the event loop, see
  // ChatSession.sendAsync); at the prompt it clears the line, and on an empty line it asks
  // once, then leaves.
  let generating = false, interrupted = false, armed = false;
  rl.on("SIGINT", () => {
    if (generating) {
      interrupted = true;
      return;
    }
    if (rl.line) {
      rl.write(null, { ctrl: true, name: "u" });
      armed = false;
      return;
    }
    if (armed) {
      rl.close();
      return;
    }
    armed = true;
    out.write("\n" + dim("(Ctrl-C again or Ctrl-D to leave)") + "\n");
    rl.prompt();
  });
  if (o.session.mode === "text") {
    (o.tty ? out : notes).write(dim("[this model has no chat turns (its tokenizer has no <|im_start|>/<|im_end|>, e.g. a character-level model): each message is continued as plain text, up to a blank line]") + "\n");
  }
  rl.prompt();
  for await (const line of rl) {
    armed = false;
    const text = line.trim();
    if (!text) { rl.prompt(); continue; }
    if (text.startsWith("/")) {
      const [cmd, ...args] = text.split(/\s+/);
      const rest = text.slice(cmd.length).trim();
      let note = "";
      switch (cmd) {
        case "/quit": case "/exit": rl.close(); return;
        case "/reset": o.session.reset(); note = "conversation reset"; break;
        case "/system": o.session.setSystem(rest); note = rest ? "system prompt set" : "system prompt removed"; break;
        case "/help": note = HELP; break;
        case "/settings": {
          const g = o.session.gen;
          note = `temperature ${g.temperature}, top-k ${g.topK}, top-p ${g.topP}, repetition-penalty ${g.repetitionPenalty}, max-new-tokens ${g.maxNewTokens}, seed ${g.seed}`;
          break;
        }
        case "/set": {
          const s = SETTINGS[(args[0] ?? "").toLowerCase()];
          if (!s || args.length !== 2) {
            note = `usage: /set NAME VALUE with NAME one of ${Object.keys(SETTINGS).join(", ")}`;
            break;
          }
          try {
            const v = parseNumber(args[1], SAMPLING_RULES[s.name]);
            o.session.gen[s.key] = v;
            note = `${s.name} = ${v}`;
          } catch (err) {
            note = `not set: ${s.name}: ${(err as Error).message}`;
          }
          break;
        }
        case "/save": {
          if (!rest) { note = "usage: /save FILE"; break; }
          const { onText: _o, shouldStop: _s, ...settings } = o.session.gen;
          try {
            writeAtomic(rest, JSON.stringify({ messages: o.session.messages, settings }, null, 2) + "\n");
            note = `saved ${o.session.messages.length} messages to ${rest}`;
          } catch (err) {
            note = `could not save to ${rest}: ${(err as Error).message}`;
          }
          break;
        }
        default: note = `unknown command ${cmd} (/help lists them)`;
      }
      (o.tty ? out : notes).write(dim(note) + "\n");
      rl.prompt();
      continue;
    }
    if (o.tty) say("mynah> ");
    const stream = screenedStream(o.screen, say);
    interrupted = false;
    o.session.gen.shouldStop = () => stream.stopEarly || interrupted;
    generating = true;
    try {
      const turn = await o.session.sendAsync(text, (t) => stream.push(t));
      generating = false;
      const { result, diverged } = stream.end({ tokenLogprobs: turn.generation.logprobs });
      if (diverged) say(`\n${dim("[screening replaced the reply above]")}\n${result.text}`);
      if (interrupted) say(dim(" [stopped]"));
      say("\n");
      // The history keeps what was shown, so a blocked reply is not fed back to the model.
      o.session.replaceLastReply(result.text);
      if (turn.dropped > 0) (o.tty ? out : notes).write(dim(`[${turn.dropped} oldest turn(s) dropped to fit the context window]`) + "\n");
      const info = `[${describeScreening(result)}]`;
      if (o.tty) say(dim(info) + "\n");
      else if (result.verdict !== "pass") notes.write(info + "\n");
      if (o.screenLog) logScreen(o.screenLog, result, { user: text, finish: turn.generation.finish, tokens: turn.generation.ids.length });
    } catch (err) {
      (o.tty ? out : notes).write(`\n${(err as Error).message}\n`);
    } finally {
      generating = false;
      o.session.gen.shouldStop = undefined;
    }
    rl.prompt();
  }
}
