/**
 * One aggregation worker thread (SumPool starts them): holds the running sums of the ciphertext
 * indexes it owns (index mod workers) for every round in progress, in memory, and adds or
 * subtracts chunks in the order they are posted (state.ts). It keeps nothing durable: the chunk
 * rows the main thread stores are the record, and a sum lost with the process is rebuilt from
 * them. Each worker has its own SEAL context (createHeContext in this thread).
 */
import { parentPort } from 'node:worker_threads';
import type { WorkerRequest } from './protocol.js';
import { SumState } from './state.js';

const port = parentPort!;
const state = new SumState();
port.on('message', (m: WorkerRequest) => {
  void state.post(m).then(({ reply, transfer }) => {
    if (reply) port.postMessage(reply, transfer);
  });
});
