/**
 * The few numbers /metrics reports, in the Prometheus text exposition format (version 0.0.4):
 * requests by route and status, prompt and generated tokens, running and waiting requests, and
 * a histogram of time to first token.
 */
const TTFT_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30];

export class Metrics {
  private readonly requests = new Map<string, number>();
  promptTokens = 0;
  generatedTokens = 0;
  private readonly ttftCounts = new Array<number>(TTFT_BUCKETS.length).fill(0);
  private ttftSum = 0;
  private ttftN = 0;

  countRequest(route: string, status: number): void {
    const k = `route="${route}",status="${status}"`;
    this.requests.set(k, (this.requests.get(k) ?? 0) + 1);
  }
  countTokens(prompt: number, generated: number): void {
    this.promptTokens += prompt;
    this.generatedTokens += generated;
  }
  observeTtft(seconds: number): void {
    this.ttftSum += seconds;
    this.ttftN++;
    TTFT_BUCKETS.forEach((b, i) => { if (seconds <= b) this.ttftCounts[i]++; });
  }

  render(gauges: { running: number; waiting: number; ready: boolean }): string {
    const out: string[] = [];
    out.push("# HELP mynah_requests_total HTTP requests by route and status.", "# TYPE mynah_requests_total counter");
    for (const [k, v] of this.requests) out.push(`mynah_requests_total{${k}} ${v}`);
    out.push("# HELP mynah_prompt_tokens_total Prompt tokens of finished generations.", "# TYPE mynah_prompt_tokens_total counter", `mynah_prompt_tokens_total ${this.promptTokens}`);
    out.push("# HELP mynah_generated_tokens_total Tokens generated.", "# TYPE mynah_generated_tokens_total counter", `mynah_generated_tokens_total ${this.generatedTokens}`);
    out.push("# HELP mynah_running_requests Generations decoding now.", "# TYPE mynah_running_requests gauge", `mynah_running_requests ${gauges.running}`);
    out.push("# HELP mynah_queue_depth Requests waiting for a slot.", "# TYPE mynah_queue_depth gauge", `mynah_queue_depth ${gauges.waiting}`);
    out.push("# HELP mynah_ready 1 once the model is loaded.", "# TYPE mynah_ready gauge", `mynah_ready ${gauges.ready ? 1 : 0}`);
    out.push("# HELP mynah_time_to_first_token_seconds From request to the first generated token.", "# TYPE mynah_time_to_first_token_seconds histogram");
    TTFT_BUCKETS.forEach((b, i) => out.push(`mynah_time_to_first_token_seconds_bucket{le="${b}"} ${this.ttftCounts[i]}`));
    out.push(`mynah_time_to_first_token_seconds_bucket{le="+Inf"} ${this.ttftN}`);
    out.push(`mynah_time_to_first_token_seconds_sum ${this.ttftSum}`, `mynah_time_to_first_token_seconds_count ${this.ttftN}`);
    return out.join("\n") + "\n";
  }
}
