/**
 * Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with the HTTP
 * status the official clients map to their APIError subclasses (400 BadRequestError,
 * 401 AuthenticationError, 404 NotFoundError, 413, 429 RateLimitError, 5xx InternalServerError).
 * `x-should-retry: false` tells those clients not to retry an error that would repeat.
 */
export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly param: string | null = null,
              readonly code: string | null = null, readonly type = typeFor(status), readonly headers: Record<string, string> = {}) {
    super(message);
    this.name = "ApiError";
  }
  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
  response(): Response {
    const retry = this.status === 429 || this.status === 503 || this.status >= 500;
    return new Response(JSON.stringify(this.body()), {
      status: this.status,
      headers: { "content-type": "application/json; charset=utf-8", "x-should-retry": retry ? "true" : "false", ...this.headers },
    });
  }
}

function typeFor(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 404) return "not_found_error";
  if (status === 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

export const invalid = (message: string, param: string | null = null, code: string | null = null): ApiError => new ApiError(400, message, param, code);
