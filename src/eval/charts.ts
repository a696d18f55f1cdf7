/**
 * Line charts as SVG, drawn by Vega-Lite (compiled to a Vega spec) and Vega's SVG renderer,
 * in Node without a browser or canvas: `View.toSVG()` with the headless renderer. One line
 * per series, coloured by series, a legend, and a tooltip-free static page.
 */
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";

export interface Point {
  series: string;
  x: number;
  y: number;
  /** Drawn dashed (validation curves). */
  dashed?: boolean;
  /** Colour group (default: the series): a run's train and validation lines share a colour. */
  group?: string;
}

export interface ChartOptions {
  title: string;
  x: string;
  y: string;
  logY?: boolean;
  width?: number;
  height?: number;
}

/** The Vega-Lite spec of a line chart, one line per series (exported for tests and for users who want the spec). */
export function lineSpec(points: readonly Point[], o: ChartOptions): TopLevelSpec {
  const positive = points.every((p) => p.y > 0);
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: o.title,
    width: o.width ?? 480,
    height: o.height ?? 220,
    data: { values: points.map((p) => ({ series: p.series, group: p.group ?? p.series, line: p.dashed ? "dashed" : "solid", [o.x]: p.x, [o.y]: p.y })) },
    mark: { type: "line", strokeWidth: 1.5, clip: true },
    encoding: {
      x: { field: o.x, type: "quantitative", title: o.x, axis: { tickMinStep: 1, format: "d" } },
      y: { field: o.y, type: "quantitative", title: o.y, scale: o.logY && positive ? { type: "log" } : { zero: false } },
      color: { field: "group", type: "nominal", title: null, legend: { orient: "bottom", columns: 2, labelLimit: 360 } },
      // One line per series (a run's train and validation curves are two series of one colour).
      detail: { field: "series", type: "nominal" },
      // Validation series are dashed, so train and validation of one run read apart.
      strokeDash: { field: "line", type: "nominal", legend: null, scale: { domain: ["solid", "dashed"], range: [[1, 0], [6, 3]] } },
    },
    config: { font: "system-ui, sans-serif", view: { stroke: "#ccd" } },
  } as TopLevelSpec;
}

/** Renders a line chart to an SVG string. */
export async function lineChart(points: readonly Point[], o: ChartOptions): Promise<string> {
  const view = new vega.View(vega.parse(compile(lineSpec(points, o)).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
