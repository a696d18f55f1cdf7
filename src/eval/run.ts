/**
 * `mynah eval`: every task on every model, results side by side. Everything the user named
 * is checked before the first model loads (task files exist and parse, models have their
 * files), so a typo fails in a second, not after an hour of scoring.
 *
 * Results file (written atomically): the models (path, SHA-256 of the weights, size), the
 * tasks (spec, files with SHA-256), the settings, the machine, and one entry per model × task.
 */
import { existsSync, statSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { writeAtomic } from "../core/atomic-write.ts";
import { fileDigest, loadExact, loadMc, type FileDigest, type TaskSpec } from "./tasks.ts";
import { describeModel, loadModel, machineInfo, type MachineInfo, type ModelInfo } from "./models.ts";
import { RUNNERS, type EvalSettings, type Metrics } from "./tasks-run.ts";

export const RESULTS_FORMAT = 1;

export interface TaskInfo {
  spec: string;
  kind: TaskSpec["kind"];
  /** A short name for tables: kind:first file's name. */
  name: string;
  files: FileDigest[];
}

export interface ResultEntry {
  model: number;
  task: number;
  n: number;
  seconds: number;
  rate: { unit: string; perSecond: number };
  metrics: Metrics;
}

export interface EvalResults {
  format: number;
  type: "mynah-eval";
  created: string;
  command: string;
  settings: Record<string, unknown>;
  machine: MachineInfo;
  models: ModelInfo[];
  tasks: TaskInfo[];
  results: ResultEntry[];
}

export interface EvalOptions {
  models: string[];
  tasks: TaskSpec[];
  settings: EvalSettings;
  /** Results file (written after each model, atomically); none: not written. */
  out?: string;
  command: string;
  /** Progress text (a line that may be rewritten in place). */
  progress?: (text: string) => void;
  log?: (line: string) => void;
}

function settingsRecord(s: EvalSettings): Record<string, unknown> {
  return {
    batch: s.batch, limit: Number.isFinite(s.limit) ? s.limit : null, chat: s.chat, samples: s.samples, temperature: s.temperature,
    topK: s.topK, topP: s.topP, maxNewTokens: s.maxNewTokens, seed: s.seed, extract: s.extractSpec, screen: s.screenSpec, perSkill: s.perSkill,
  };
}

/** Start-up checks: every model folder and task file readable, mc/exact files parse. */
export async function checkEval(o: EvalOptions): Promise<{ models: ModelInfo[]; tasks: TaskInfo[] }> {
  if (o.models.length === 0) throw new Error("--model: at least one model folder is needed");
  if (o.tasks.length === 0) throw new Error("--task: at least one task is needed (e.g. --task mc:arc.jsonl bpb:val.txt)");
  if (o.out) {
    const dir = dirname(resolve(o.out));
    if (!existsSync(dir)) throw new Error(`--out ${o.out}: folder ${dir} does not exist`);
    if (existsSync(o.out) && statSync(o.out).isDirectory()) throw new Error(`--out ${o.out}: is a folder; name the results file (e.g. results.json)`);
  }
  const models = o.models.map(describeModel);
  for (const t of o.tasks) {
    // Parse the question files now: a bad line fails before any model runs.
    if (t.kind === "mc") await loadMc(t.files[0], o.settings.limit);
    if (t.kind === "exact") await loadExact(t.files[0], o.settings.limit);
    if ((t.kind === "skills" || t.kind === "chat-loss") && models.some((m) => !m.chatTemplate))
      throw new Error(`--task ${t.spec}: model ${models.find((m) => !m.chatTemplate)!.arg} has no chat template tokens (<|im_start|>, <|im_end|>)`);
  }
  if (o.settings.chat === "on") {
    const m = models.find((x) => !x.chatTemplate);
    if (m) throw new Error(`--chat on: model ${m.arg} has no chat template tokens (<|im_start|>, <|im_end|>)`);
  }
  const tasks = o.tasks.map((t): TaskInfo => ({
    spec: t.spec, kind: t.kind, name: t.files.length ? `${t.kind}:${basename(t.files[0])}${t.files.length > 1 ? `+${t.files.length - 1}` : ""}` : t.kind,
    files: t.files.map(fileDigest),
  }));
  return { models, tasks };
}

export async function runEval(o: EvalOptions): Promise<EvalResults> {
  const { models, tasks } = await checkEval(o);
  const res: EvalResults = {
    format: RESULTS_FORMAT, type: "mynah-eval", created: new Date().toISOString(), command: o.command,
    settings: settingsRecord(o.settings), machine: machineInfo(), models, tasks, results: [],
  };
  const save = (): void => { if (o.out) writeAtomic(o.out, JSON.stringify(res, null, 2) + "\n"); };
  for (const [mi, info] of models.entries()) {
    const { model, tokenizer } = loadModel(info);
    for (const [ti, spec] of o.tasks.entries()) {
      const label = `${info.name} · ${tasks[ti].name}`;
      const t0 = performance.now();
      let last = 0;
      const run = await RUNNERS[spec.kind](spec, {
        model, tok: tokenizer, modelDir: info.path, settings: o.settings,
        progress: (done, total, unit) => {
          const now = performance.now();
          if (done < total && now - last < 250) return;
          last = now;
          const rate = done / Math.max(1e-9, (now - t0) / 1000);
          o.progress?.(`model ${mi + 1}/${models.length} · task ${ti + 1}/${tasks.length} · ${label} · ${done}/${total} ${unit} · ${rate.toFixed(1)} ${unit}/s`);
        },
      });
      const seconds = (performance.now() - t0) / 1000;
      res.results.push({ model: mi, task: ti, n: run.n, seconds, rate: run.rate, metrics: run.metrics });
      o.log?.(`${label}: ${headline(tasks[ti].kind, run.metrics)} (${run.n} in ${seconds.toFixed(1)} s, ${run.rate.perSecond.toFixed(1)} ${run.rate.unit}/s)`);
      save();
    }
  }
  save();
  return res;
}

// --- the table ----------------------------------------------------------------------------------

const pct = (x: unknown): string => (typeof x === "number" ? `${(100 * x).toFixed(1)}%` : "–");
const num = (x: unknown, d = 4): string => (typeof x === "number" ? x.toFixed(d) : "–");
const ci = (m: Metrics, k: string): string => `${pct(m[k])} [${pct(m[k + "Lo"]).replace("%", "")}–${pct(m[k + "Hi"])}]`;

/** Rows (metric label, formatted value) of one result. */
export function metricRows(kind: TaskSpec["kind"], m: Metrics): [string, string][] {
  switch (kind) {
    case "bpb":
      return [["bits per byte", num(m.bpb)], ["loss (nats/token)", num(m.loss)]];
    case "chat-loss":
      return [["assistant loss (nats/token)", num(m.loss)], ["perplexity", num(m.perplexity, 2)]];
    case "mc": {
      const rows: [string, string][] = [["accuracy (log-likelihood)", ci(m, "accuracy")], ["accuracy (per byte)", ci(m, "accuracyNorm")]];
      if ("accuracyLetter" in m) rows.push(["accuracy (answer letter)", ci(m, "accuracyLetter")]);
      rows.push(["random baseline", pct(m.random)]);
      return rows;
    }
    case "exact": {
      const rows: [string, string][] = [[Number(m.samples) > 1 ? "accuracy (first sample)" : "accuracy (greedy)", ci(m, "accuracy")]];
      if (Number(m.samples) > 1) rows.push(["pass@1", pct(m.passAt1)], [`pass@${m.samples}`, pct(m[`passAt${m.samples}`])]);
      rows.push(["answer found", pct(m.extracted)]);
      return rows;
    }
    case "skills": {
      const rows: [string, string][] = [["accuracy (all skills)", ci(m, "accuracy")]];
      for (const [k, v] of Object.entries((m.skills ?? {}) as Record<string, { correct: number; asked: number; accuracy: number }>)) rows.push([`  ${k}`, `${pct(v.accuracy)} (${v.correct}/${v.asked})`]);
      return rows;
    }
    case "screen":
      return [["blocked", pct(m.blocked)], ["flagged", pct(m.flagged)], ["redacted", pct(m.redacted)], ["passed", pct(m.passed)],
        ["low confidence", pct(m.lowConfidence)], ["mean token logprob", num(m.meanLogprob, 3)]];
  }
}

/** The one number a log line shows. */
export function headline(kind: TaskSpec["kind"], m: Metrics): string {
  const r = metricRows(kind, m)[0];
  return `${r[0]} ${r[1]}`;
}

/** The results as a Markdown table: one row per task metric, one column per model. */
export function resultsTable(r: EvalResults): string {
  const header = ["task", "metric", ...r.models.map((m) => m.name)];
  const rows: string[][] = [];
  r.tasks.forEach((t, ti) => {
    const per = r.models.map((_, mi) => r.results.find((x) => x.model === mi && x.task === ti));
    const first = per.find((x) => x);
    if (!first) return;
    const labels = metricRows(t.kind, first.metrics).map((x) => x[0]);
    labels.forEach((label, li) => {
      rows.push([li === 0 ? `${t.name} (${first.n})` : "", label, ...per.map((x) => (x ? metricRows(t.kind, x.metrics)[li]?.[1] ?? "–" : "–"))]);
    });
  });
  const w = header.map((h, i) => Math.max([...h].length, ...rows.map((row) => [...row[i]].length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c + " ".repeat(w[i] - [...c].length)).join(" | ")} |`;
  return [line(header), line(w.map((n) => "-".repeat(n))), ...rows.map(line)].join("\n") + "\n";
}
