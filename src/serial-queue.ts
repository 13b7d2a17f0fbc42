/**
 * Runs async work one piece at a time. A Durable Object's input gates only hold while it
 * touches its own storage; awaiting D1, KV or WebCrypto lets other calls in, so changes that
 * read, decide and write must queue.
 */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(work: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(work, work);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}
