import { UnavailableError } from 'memory-core';

export interface ForwardedResponse {
  status: number;
  body: unknown;
  /**
   * The search service's `Server-Timing` header (when its SERVER_TIMING is on), with the hop to it
   * appended as `search-service;dur=…` (ms, request sent to answer read).
   */
  serverTiming?: string;
}

/** Calls the search service. It answers reads and searches; the gateway passes its answers through. */
export class SearchClient {
  constructor(
    private readonly baseUrl: string,
    private readonly timeoutMs: number,
  ) {}

  async forward(
    method: 'GET' | 'POST',
    path: string,
    headers: { userId: string; requestId: string },
    body?: unknown,
  ): Promise<ForwardedResponse> {
    let status: number;
    let text: string;
    let serverTiming: string | null;
    const started = performance.now();
    try {
      const response = await fetch(new URL(path, this.baseUrl), {
        method,
        headers: {
          'content-type': 'application/json',
          'x-user-id': headers.userId,
          'x-request-id': headers.requestId,
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      status = response.status;
      serverTiming = response.headers.get('server-timing');
      // Inside the try: the timeout can also abort while the body is being read.
      text = await response.text();
    } catch (cause) {
      throw new UnavailableError('the search service does not answer', {
        cause,
        code: 'search_service_unavailable',
      });
    }
    try {
      const hop = `search-service;dur=${(performance.now() - started).toFixed(3)}`;
      return {
        status,
        body: JSON.parse(text) as unknown,
        ...(serverTiming ? { serverTiming: `${serverTiming}, ${hop}` } : {}),
      };
    } catch (cause) {
      throw new UnavailableError('the search service gave an unreadable answer', {
        cause,
        code: 'search_service_unavailable',
      });
    }
  }

  /** Whether the search service answers, and what it reports about itself. */
  async info(): Promise<{ reachable: boolean; url: string; detail?: unknown; error?: string }> {
    try {
      const response = await fetch(new URL('/info', this.baseUrl), { signal: AbortSignal.timeout(2_000) });
      return { reachable: response.ok, url: this.baseUrl, detail: (await response.json()) as unknown };
    } catch (error) {
      return { reachable: false, url: this.baseUrl, error: (error as Error).message };
    }
  }
}
