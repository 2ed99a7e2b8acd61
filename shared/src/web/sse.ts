import type { IncomingMessage, ServerResponse } from 'node:http';
import { CONSOLE_SECURITY_HEADERS } from './headers.js';

/**
 * Server-sent events (WHATWG HTML §9.2) for the consoles' live views: the server pushes a short
 * event when something changed and the page re-fetches the fragment it shows, so no page is
 * reloaded and nothing is polled. With fastify: `reply.hijack(); const s = openSse(req.raw, reply.raw)`.
 */
export interface SseStream {
  send(event: string, data: unknown): void;
  close(): void;
  readonly closed: boolean;
}

export function openSse(req: IncomingMessage, res: ServerResponse, opts: { heartbeatMs?: number; onClose?: () => void } = {}): SseStream {
  res.writeHead(200, { ...CONSOLE_SECURITY_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  res.write('retry: 2000\n\n');
  let closed = false;
  const heartbeat = setInterval(() => {
    if (!closed) res.write(': keep-alive\n\n');
  }, opts.heartbeatMs ?? 15_000);
  heartbeat.unref();
  const end = () => {
    if (closed) return;
    closed = true;
    clearInterval(heartbeat);
    opts.onClose?.();
  };
  req.on('close', end);
  res.on('close', end);
  return {
    send(event, data) {
      if (closed) return;
      // Event names are ours; data is one JSON line (JSON never holds a raw newline).
      res.write(`event: ${event.replace(/[^\w.-]/g, '')}\ndata: ${JSON.stringify(data)}\n\n`);
    },
    close() {
      end();
      res.end();
    },
    get closed() {
      return closed;
    },
  };
}

/** Topic → listeners; the engine publishes, each open SSE stream subscribes to what its page shows. */
export class EventHub<T = unknown> {
  private readonly listeners = new Map<string, Set<(data: T) => void>>();

  subscribe(topic: string, fn: (data: T) => void): () => void {
    let set = this.listeners.get(topic);
    if (!set) this.listeners.set(topic, (set = new Set()));
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0) this.listeners.delete(topic);
    };
  }

  publish(topic: string, data: T): void {
    for (const fn of [...(this.listeners.get(topic) ?? [])]) {
      try {
        fn(data);
      } catch {
        // A broken listener (a closed stream) must not stop the others or the publisher.
      }
    }
  }

  listenerCount(topic: string): number {
    return this.listeners.get(topic)?.size ?? 0;
  }
}
