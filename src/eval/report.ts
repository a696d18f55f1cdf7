/**
 * `mynah report RUN...`: one self-contained HTML page (and a Markdown summary) from run
 * folders and eval results. Read, in order of what a RUN argument is:
 *
 *   an eval results file (mynah eval --out)   → a results table
 *   a speedrun folder (speedrun.json)          → pretrain/ and sft/ metrics, the skills table, stage times
 *   a training run folder (metrics.jsonl)      → curves; the latest checkpoint's settings, tokens, SFT before/after
 *
 * Curves (training and validation loss, learning rate, gradient norm, tokens/s, MFU over
 * steps) are Vega-Lite charts rendered to SVG in Node by Vega's own renderer, one line per
 * run, several runs overlaid. The page has no script and loads nothing: it opens offline.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { writeAtomic } from "../core/atomic-write.ts";
import { latestCheckpoint } from "../train/checkpoint.ts";
import { parameterCount } from "../model/config.ts";
import { readModelConfig } from "../model/weights.ts";
import { lineChart, type Point } from "./charts.ts";
import { metricRows, type EvalResults } from "./run.ts";

/** One series of a run: a training stage's metrics.jsonl. */
export interface RunSeries {
  /** Legend name: the run's name, plus the stage for a speedrun. */
  name: string;
  dir: string;
  steps: { step: number; loss: number; lr: number; gradNorm: number; tokensPerSec: number; mfu: number | null; tokens: number; ms: number; time: string }[];
  evals: { step: number; valLoss: number; valBpb: number | null }[];
  /** The `run` record(s): command line, machine, threads, parameters. */
  runInfo: Record<string, unknown> | null;
  /** Settings from the latest checkpoint's state.json (options), when there is one. */
  options: Record<string, unknown> | null;
  params: number | null;
}

export interface LoadedRun {
  arg: string;
  name: string;
  kind: "train" | "speedrun" | "eval";
  series: RunSeries[];
  /** Speedrun extras. */
  speedrun?: { plan: Record<string, unknown>; stages: { stage: string; seconds: number; note: string }[]; scores: { skill: string; correct: number; asked: number; accuracy: number; description: string }[]; valLoss?: number };
  eval?: EvalResults;
}

function readJsonl(path: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  readFileSync(path, "utf8").split("\n").forEach((l, i) => {
    if (!l.trim()) return;
    try {
      out.push(JSON.parse(l) as Record<string, unknown>);
    } catch (err) {
      throw new Error(`${path}:${i + 1}: not valid JSON (${(err as Error).message})`);
    }
  });
  return out;
}

/** The series of one folder holding metrics.jsonl (a train/sft run, or a speedrun stage). */
export function loadSeries(dir: string, name: string): RunSeries {
  const file = join(dir, "metrics.jsonl");
  const s: RunSeries = { name, dir, steps: [], evals: [], runInfo: null, options: null, params: null };
  for (const r of readJsonl(file)) {
    if (r.type === "step" && typeof r.step === "number") {
      // A resumed run appends: a step seen again replaces the earlier one (the resumed run's).
      while (s.steps.length && s.steps[s.steps.length - 1].step >= r.step) s.steps.pop();
      s.steps.push({ step: r.step, loss: Number(r.loss), lr: Number(r.lr), gradNorm: Number(r.gradNorm), tokensPerSec: Number(r.tokensPerSec),
        mfu: typeof r.mfu === "number" ? r.mfu : null, tokens: Number(r.tokens), ms: Number(r.ms) || 0, time: String(r.time ?? "") });
    } else if (r.type === "eval" && typeof r.step === "number") {
      while (s.evals.length && s.evals[s.evals.length - 1].step >= r.step) s.evals.pop();
      s.evals.push({ step: r.step, valLoss: Number(r.valLoss), valBpb: typeof r.valBpb === "number" ? r.valBpb : null });
    } else if (r.type === "run") s.runInfo = r;
  }
  const ck = existsSync(join(dir, "latest")) ? latestCheckpoint(dir) : null;
  if (ck && existsSync(join(ck, "state.json"))) s.options = (JSON.parse(readFileSync(join(ck, "state.json"), "utf8")) as { options?: Record<string, unknown> }).options ?? null;
  const cfgDir = ck ?? (existsSync(join(dir, "config.json")) ? dir : null);
  if (cfgDir) {
    try {
      s.params = parameterCount(readModelConfig(cfgDir).config);
    } catch {
      // a config this mynah cannot read: no parameter count
    }
  }
  if (s.params === null && typeof s.runInfo?.params === "number") s.params = s.runInfo.params;
  return s;
}

/** Reads one RUN argument. */
export function loadRun(arg: string): LoadedRun {
  if (!existsSync(arg)) throw new Error(`${arg}: no such file or folder`);
  const name = basename(resolve(arg));
  if (statSync(arg).isFile()) {
    let j: EvalResults;
    try {
      j = JSON.parse(readFileSync(arg, "utf8")) as EvalResults;
    } catch (err) {
      throw new Error(`${arg}: not a JSON file (${(err as Error).message})`);
    }
    if (j.type !== "mynah-eval") throw new Error(`${arg}: not a mynah eval results file (no "type": "mynah-eval")`);
    return { arg, name, kind: "eval", series: [], eval: j };
  }
  if (existsSync(join(arg, "speedrun.json"))) {
    const st = JSON.parse(readFileSync(join(arg, "speedrun.json"), "utf8")) as { plan: Record<string, unknown>; stages: Record<string, { stage: string; seconds: number; note: string }> };
    const series = ["pretrain", "sft"].filter((s) => existsSync(join(arg, s, "metrics.jsonl"))).map((s) => loadSeries(join(arg, s), `${name}/${s}`));
    const evalFile = join(arg, "eval", "eval.json");
    const ev = existsSync(evalFile) ? (JSON.parse(readFileSync(evalFile, "utf8")) as { scores: NonNullable<LoadedRun["speedrun"]>["scores"]; valLoss: number }) : null;
    return {
      arg, name, kind: "speedrun", series,
      speedrun: { plan: st.plan, stages: Object.values(st.stages), scores: ev?.scores ?? [], valLoss: ev?.valLoss },
    };
  }
  if (existsSync(join(arg, "metrics.jsonl"))) return { arg, name, kind: "train", series: [loadSeries(arg, name)] };
  throw new Error(`${arg}: not a run folder (no metrics.jsonl or speedrun.json) nor an eval results file`);
}

// --- summaries ----------------------------------------------------------------------------------

const fmtInt = (x: number | null | undefined): string => (typeof x === "number" && Number.isFinite(x) ? Math.round(x).toLocaleString("en") : "–");
const fmt = (x: number | null | undefined, d = 4): string => (typeof x === "number" && Number.isFinite(x) ? x.toFixed(d) : "–");

function wallSeconds(s: RunSeries): number | null {
  if (s.steps.length < 2) return null;
  const a = Date.parse(s.steps[0].time), b = Date.parse(s.steps[s.steps.length - 1].time);
  // From the first step's end to the last's, plus the first step itself.
  return Number.isFinite(a) && Number.isFinite(b) ? (b - a) / 1000 + s.steps[0].ms / 1000 : null;
}

function duration(sec: number | null): string {
  if (sec === null) return "–";
  const s = Math.round(sec);
  return s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** One summary row per series. */
export function seriesSummary(s: RunSeries): Record<string, string> {
  const last = s.steps[s.steps.length - 1];
  const tail = s.steps.slice(-Math.max(1, Math.floor(s.steps.length / 10)));
  const meanTail = (f: (x: RunSeries["steps"][number]) => number): number => tail.reduce((a, x) => a + f(x), 0) / tail.length;
  const info = s.runInfo ?? {};
  const before = (s.options?.before as { loss?: number } | undefined)?.loss;
  const lastEval = s.evals[s.evals.length - 1];
  return {
    run: s.name,
    params: s.params ? `${(s.params / 1e6).toFixed(2)}M` : "–",
    steps: fmtInt(last?.step),
    tokens: fmtInt(last?.tokens),
    "wall time": duration(wallSeconds(s)),
    "final loss": last ? fmt(meanTail((x) => x.loss)) : "–",
    "val loss": lastEval ? fmt(lastEval.valLoss) + (lastEval.valBpb !== null ? ` (${fmt(lastEval.valBpb)} bpb)` : "") : "–",
    "SFT before → after": typeof before === "number" && lastEval ? `${fmt(before)} → ${fmt(lastEval.valLoss)}` : "–",
    "tok/s": last ? fmtInt(meanTail((x) => x.tokensPerSec)) : "–",
    MFU: last && last.mfu !== null ? `${(100 * meanTail((x) => x.mfu ?? 0)).toFixed(1)}%` : "–",
    machine: info.cpus ? `${info.threads ?? "?"} threads of ${info.cpus} CPUs, ${info.simd ?? "?"}${info.cpuModel ? `, ${info.cpuModel}` : ""}` : "–",
    command: Array.isArray(info.argv) ? commandLine(info.argv as string[]) : "–",
  };
}

/** A run record's argv (script first) as the user would type it: `mynah …` for the mynah command, else the script and its arguments. */
export function commandLine(argv: readonly string[]): string {
  if (argv.length === 0) return "–";
  return /mynah[^/]*$|src\/cli\/main\.ts$/.test(argv[0]) ? shellJoin(["mynah", ...argv.slice(1)]) : shellJoin(["node", ...argv]);
}

export function shellJoin(args: readonly string[]): string {
  return args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(" ");
}

// --- charts -------------------------------------------------------------------------------------

/** Charts of the runs' series: [title, svg]. A chart is drawn only when some series has its data. */
export async function runCharts(series: readonly RunSeries[]): Promise<{ title: string; svg: string; lines: number }[]> {
  const out: { title: string; svg: string; lines: number }[] = [];
  const add = async (title: string, y: string, pts: Point[], opts: { logY?: boolean } = {}): Promise<void> => {
    if (pts.length === 0) return;
    const lines = new Set(pts.map((p) => p.series)).size;
    out.push({ title, lines, svg: await lineChart(pts, { title, x: "step", y, logY: opts.logY }) });
  };
  const steps = (f: (x: RunSeries["steps"][number]) => number | null): Point[] =>
    series.flatMap((s) => thin(s.steps).flatMap((x) => { const v = f(x); return v === null || !Number.isFinite(v) ? [] : [{ series: s.name, x: x.step, y: v }]; }));
  const loss: Point[] = [
    ...steps((x) => x.loss).map((p) => ({ ...p, group: p.series, series: `${p.series} train` })),
    ...series.flatMap((s) => s.evals.filter((e) => Number.isFinite(e.valLoss)).map((e) => ({ series: `${s.name} validation`, group: s.name, x: e.step, y: e.valLoss, dashed: true }))),
  ];
  await add("loss (nats/token; validation dashed)", "loss", loss);
  await add("validation bits per byte", "bpb", series.flatMap((s) => s.evals.filter((e) => e.valBpb !== null).map((e) => ({ series: s.name, x: e.step, y: e.valBpb! }))));
  await add("learning rate", "lr", steps((x) => x.lr));
  await add("gradient norm (before clipping)", "grad norm", steps((x) => x.gradNorm), { logY: true });
  await add("tokens per second", "tok/s", steps((x) => x.tokensPerSec));
  await add("MFU (%)", "MFU %", steps((x) => (x.mfu === null ? null : 100 * x.mfu)));
  return out;
}

/** At most ~1500 points per series (every k-th step, the last kept): charts stay light. */
function thin<T>(xs: readonly T[], max = 1500): T[] {
  if (xs.length <= max) return [...xs];
  const k = Math.ceil(xs.length / max);
  return xs.filter((_, i) => i % k === 0 || i === xs.length - 1);
}

// --- the page ---------------------------------------------------------------------------------

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

function htmlTable(rows: Record<string, string>[], cls = ""): string {
  if (rows.length === 0) return "";
  const cols = Object.keys(rows[0]);
  return `<table class="${cls}"><thead><tr>${cols.map((c) => `<th>${esc(c)}</th>`).join("")}</tr></thead><tbody>` +
    rows.map((r) => `<tr>${cols.map((c) => `<td>${esc(r[c] ?? "")}</td>`).join("")}</tr>`).join("") + "</tbody></table>";
}

function mdTable(rows: Record<string, string>[]): string {
  if (rows.length === 0) return "";
  const cols = Object.keys(rows[0]);
  const cell = (s: string): string => s.replace(/\|/g, "\\|").replace(/\n/g, " ");
  return [`| ${cols.join(" | ")} |`, `| ${cols.map(() => "---").join(" | ")} |`, ...rows.map((r) => `| ${cols.map((c) => cell(r[c] ?? "")).join(" | ")} |`)].join("\n") + "\n";
}

/** An eval results file as table rows: one per task metric, one column per model. */
export function evalRows(e: EvalResults): Record<string, string>[] {
  const rows: Record<string, string>[] = [];
  e.tasks.forEach((t, ti) => {
    const per = e.models.map((_, mi) => e.results.find((x) => x.model === mi && x.task === ti));
    const first = per.find((x) => x);
    if (!first) return;
    metricRows(t.kind, first.metrics).forEach(([label], li) => {
      const row: Record<string, string> = { task: li === 0 ? `${t.name} (${first.n})` : "", metric: label };
      e.models.forEach((m, mi) => { row[m.name] = per[mi] ? metricRows(t.kind, per[mi]!.metrics)[li]?.[1] ?? "–" : "–"; });
      rows.push(row);
    });
  });
  return rows;
}

export interface ReportOptions {
  runs: string[];
  /** The HTML file; the Markdown summary goes beside it (same name, .md). */
  out: string;
  title?: string;
}

export interface Report {
  html: string;
  markdown: string;
  charts: { title: string; lines: number }[];
}

/** Builds the page and the summary (without writing them). */
export async function buildReport(runs: readonly LoadedRun[], title = "mynah run report"): Promise<Report> {
  const series = runs.flatMap((r) => r.series);
  const charts = await runCharts(series);
  const summary = series.map(seriesSummary);
  const html: string[] = [];
  const md: string[] = [`# ${title}`, "", `Runs: ${runs.map((r) => r.arg).join(", ")}`, ""];
  html.push(`<h1>${esc(title)}</h1><p class="meta">Generated ${esc(new Date().toISOString())} from ${runs.map((r) => `<code>${esc(r.arg)}</code>`).join(", ")}</p>`);
  if (summary.length) {
    const brief = summary.map((s) => { const { command, machine, ...rest } = s; void command; void machine; return rest; });
    html.push(`<h2>Runs</h2>${htmlTable(brief)}`);
    md.push("## Runs", "", mdTable(brief));
    const cmds = summary.filter((s) => s.command !== "–" || s.machine !== "–");
    if (cmds.length) {
      html.push(`<h2>Commands and machines</h2>` + cmds.map((s) => `<p><b>${esc(s.run)}</b> — ${esc(s.machine)}</p><pre>${esc(s.command)}</pre>`).join(""));
      md.push("## Commands", "", ...cmds.map((s) => `- ${s.run} (${s.machine}): \`${s.command}\``), "");
    }
  }
  if (charts.length) html.push(`<h2>Training curves</h2><div class="charts">${charts.map((c) => `<figure class="chart" data-title="${esc(c.title)}" data-lines="${c.lines}">${c.svg}</figure>`).join("")}</div>`);
  for (const r of runs) {
    if (r.speedrun) {
      const sr = r.speedrun;
      const rows = sr.scores.map((s) => ({ skill: s.skill, correct: `${s.correct}/${s.asked}`, accuracy: `${(100 * s.accuracy).toFixed(1)}%`, "what it asks": s.description }));
      const stages = sr.stages.map((s) => ({ stage: s.stage, seconds: s.seconds.toFixed(1), note: s.note }));
      html.push(`<h2>Speedrun ${esc(r.name)}: held-out skills</h2>${htmlTable(rows)}` +
        (sr.valLoss !== undefined ? `<p>Validation loss on the reference replies: ${fmt(sr.valLoss)} nats/token.</p>` : "") +
        `<h3>Stages</h3>${htmlTable(stages)}<p>Total ${duration(sr.stages.reduce((a, s) => a + s.seconds, 0))}.</p>`);
      md.push(`## Speedrun ${r.name}: held-out skills`, "", mdTable(rows), "### Stages", "", mdTable(stages));
    }
    if (r.eval) {
      const e = r.eval;
      const rows = evalRows(e);
      const models = e.models.map((m) => ({ model: m.name, path: m.path, parameters: fmtInt(m.params), sha256: m.sha256.slice(0, 16), "chat template": m.chatTemplate ? "yes" : "no" }));
      const files = e.tasks.flatMap((t) => t.files.map((f) => ({ task: t.spec, file: f.path, bytes: fmtInt(f.bytes), sha256: f.sha256.slice(0, 16) })));
      html.push(`<h2>Evaluation ${esc(r.name)}</h2>${htmlTable(rows, "eval")}<h3>Models</h3>${htmlTable(models)}` +
        (files.length ? `<h3>Task files</h3>${htmlTable(files)}` : "") +
        `<p class="meta">${esc(e.created)} · ${esc(`${e.machine.threads} threads of ${e.machine.cpus} CPUs (${e.machine.simd}), Node ${e.machine.node}`)}</p><pre>${esc(e.command)}</pre>`);
      md.push(`## Evaluation ${r.name}`, "", mdTable(rows), `\`${e.command}\``, "");
    }
  }
  const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1180px; padding: 0 16px; color: #1d2330; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #dde; padding-bottom: 4px; }
table { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d6d9e0; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f2f4f8; } pre { background: #f6f7f9; padding: 8px; overflow-x: auto; white-space: pre-wrap; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; } figure.chart { margin: 0; } .meta { color: #667; }
</style></head><body>
${html.join("\n")}
</body></html>
`;
  return { html: page, markdown: md.join("\n") + "\n", charts: charts.map(({ title, lines }) => ({ title, lines })) };
}

/** Reads the runs, writes OUT (HTML) and OUT with .md (Markdown), both atomically. */
export async function writeReport(o: ReportOptions): Promise<Report & { htmlPath: string; mdPath: string }> {
  if (o.runs.length === 0) throw new Error("report: name at least one run folder or eval results file");
  if (!/\.html?$/i.test(o.out)) throw new Error(`--out ${o.out}: the report is an HTML file (end the name in .html)`);
  if (!existsSync(dirname(resolve(o.out)))) throw new Error(`--out ${o.out}: folder ${dirname(o.out)} does not exist`);
  const runs = o.runs.map(loadRun);
  const rep = await buildReport(runs, o.title);
  const mdPath = o.out.replace(/\.html?$/i, ".md");
  writeAtomic(o.out, rep.html);
  writeAtomic(mdPath, rep.markdown);
  return { ...rep, htmlPath: o.out, mdPath };
}
