/**
 * The run reports the server shows: the model's own run folder (when --model is a run folder
 * or a checkpoint inside one) and the folders given with --runs. Each is rendered by the one
 * report implementation, eval/report.ts (the page `mynah report` writes), on first view and
 * again whenever the run's files change (a run still training shows its latest steps).
 *
 * Nothing is served from the folders themselves: a report is addressed by its number in the
 * list (/reports/1), never by a path, so no request can name a file outside the known runs.
 */
import { existsSync, realpathSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { buildReport, loadRun, seriesSummary, type LoadedRun } from "../eval/report.ts";

export interface KnownRun {
  /** 1-based number in the list: the page is /reports/<id>. */
  id: number;
  /** The folder (or eval results file) as given. */
  path: string;
  name: string;
  kind: LoadedRun["kind"];
}

/**
 * The run folder a model folder belongs to: the model itself or its parent when it holds
 * metrics.jsonl (a checkpoint sits in its run folder), or a speedrun's root (speedrun.json)
 * one level up, or two levels up above a stage's run folder (RUN/pretrain/CHECKPOINT).
 */
export function runFolderOf(model: string): string | null {
  const m = resolve(model), p1 = dirname(m), p2 = dirname(p1);
  const has = (d: string, f: string): boolean => existsSync(join(d, f));
  const run = has(m, "metrics.jsonl") ? m : has(p1, "metrics.jsonl") ? p1 : null;
  if (has(m, "speedrun.json")) return m;
  if (has(p1, "speedrun.json")) return p1;
  if (run === p1 && has(p2, "speedrun.json")) return p2;
  return run;
}

/** The files a report reads; their sizes and times tell when it must be rebuilt. */
function signature(path: string): string {
  const files = statSync(path).isFile() ? [path]
    : ["metrics.jsonl", "speedrun.json", "latest", join("pretrain", "metrics.jsonl"), join("sft", "metrics.jsonl"), join("eval", "eval.json")].map((f) => join(path, f));
  return files.map((f) => { try { const s = statSync(f); return `${s.size}:${s.mtimeMs}`; } catch { return "-"; } }).join("|");
}

export class RunReports {
  readonly runs: KnownRun[];
  private readonly cache = new Map<number, { sig: string; html: string }>();

  /**
   * Checks every run at start-up (each must be what `mynah report` reads: a run folder with
   * metrics.jsonl or speedrun.json, or an eval results file); `flag` names the option in errors.
   * The same folder given twice is listed once.
   */
  constructor(paths: readonly { path: string; flag: string }[]) {
    const seen = new Set<string>();
    this.runs = [];
    for (const { path, flag } of paths) {
      let run: LoadedRun;
      try {
        run = loadRun(path);
      } catch (err) {
        throw new Error(`${flag} ${path}: ${(err as Error).message.replace(`${path}: `, "")}`);
      }
      const real = realpathSync(path);
      if (seen.has(real)) continue;
      seen.add(real);
      this.runs.push({ id: this.runs.length + 1, path, name: run.name || basename(real), kind: run.kind });
    }
  }

  /** The report page of run `id`, or null when there is no such run. */
  async page(id: number): Promise<string | null> {
    const run = this.runs.find((r) => r.id === id);
    if (!run) return null;
    const sig = signature(run.path);
    const hit = this.cache.get(id);
    if (hit && hit.sig === sig) return hit.html;
    const rep = await buildReport([loadRun(run.path)], `${run.name}: run report`);
    // A way back to the list (the page itself stays the offline page `mynah report` writes).
    const html = rep.html.replace("<body>\n", `<body>\n<p class="meta"><a href="/reports">← all runs</a> · <a href="/">chat</a></p>\n`);
    this.cache.set(id, { sig, html });
    return html;
  }

  /** The list of runs: one row each with its headline figures, linking to its report. */
  index(modelName: string): string {
    const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
    const rows = this.runs.map((r) => {
      let cells: string[];
      try {
        const run = loadRun(r.path);
        const s = run.series.map(seriesSummary);
        const last = s[s.length - 1];
        cells = [last?.steps ?? "–", last?.["final loss"] ?? "–", last?.["val loss"] ?? "–", s.length ? s.map((x) => x["wall time"]).join(" + ") : "–"];
      } catch (err) {
        cells = [`unreadable: ${(err as Error).message}`, "", "", ""];
      }
      return `<tr><td><a href="/reports/${r.id}">${esc(r.name)}</a></td><td>${esc(r.kind)}</td>${cells.map((c) => `<td>${esc(c)}</td>`).join("")}<td><code>${esc(r.path)}</code></td></tr>`;
    });
    return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Run reports · ${esc(modelName)}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1180px; padding: 0 16px; color: #1d2330; }
table { border-collapse: collapse; margin: 8px 0; } th, td { border: 1px solid #d6d9e0; padding: 3px 8px; text-align: left; } th { background: #f2f4f8; }
.meta { color: #667; }
</style></head><body>
<p class="meta"><a href="/">← chat</a></p>
<h1>Run reports</h1>
<p class="meta">Runs this server knows: the model's own run folder and those given with <code>--runs</code>.</p>
${rows.length ? `<table><thead><tr><th>run</th><th>kind</th><th>steps</th><th>final loss</th><th>val loss</th><th>wall time</th><th>folder</th></tr></thead><tbody>${rows.join("")}</tbody></table>`
  : "<p>None: start <code>mynah serve</code> with <code>--runs DIR</code>, or with a model inside a run folder.</p>"}
</body></html>
`;
  }
}
